"""The explorer's named endpoints through ``gradio_client``, against a server started on a free port."""

import io
import json
import pickle
import zipfile
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path

import numpy as np
import pytest
from gradio_client import Client, handle_file
from helpers import ablation_script, running_server

from app import evidence
from app.shapes import MAX_UPLOAD_BYTES

ASSETS = Path(__file__).resolve().parent.parent / "assets"
SHAPE = ASSETS / "chair_0002.off"
BURST = 10
RESULT_TIMEOUT_S = 120
HUGE_POINTS = 5_000_000


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    folder = tmp_path_factory.mktemp("api")
    with running_server(folder) as url:
        yield Client(url, verbose=False, download_files=str(folder / "downloads"))


def test_classify_a_bundled_shape(client):
    result = client.predict(handle_file(str(SHAPE)), api_name="/classify")
    confidences = {c["label"]: c["confidence"] for c in result["confidences"]}
    assert set(confidences) == {"chair", "table"} and sum(confidences.values()) == pytest.approx(1, abs=1e-4)


def test_explore_and_few_shot_endpoints(client):
    out = client.predict(handle_file(str(SHAPE)), 1024, 0, "efficientnet-lite0", 64, 0.8, -1.0, 0,
                         api_name="/explore")
    summary, *_, stats = out
    assert "chair_0002.off" in summary and "τ = 0.1" in stats
    _, recon_text = client.predict(handle_file(str(SHAPE)), 1024, 0, "efficientnet-lite0", 0.8, -1.0, 0,
                                   api_name="/reconstruct")
    assert recon_text.count("Chamfer-L2") == 2
    text, prediction, _ = client.predict(["chair", "table"], 2, 0, [], handle_file(str(SHAPE)),
                                         api_name="/few_shot")
    assert "2-way 2-shot" in text and prediction["label"] in {"chair", "table"}


def test_novelty_and_guidance_endpoints(client):
    verdict = client.predict(handle_file(str(SHAPE)), api_name="/novelty")
    assert set(verdict) == {"score", "known", "threshold"} and isinstance(verdict["known"], bool)
    assert verdict["known"] == (verdict["score"] <= verdict["threshold"])
    *_, numbers = client.predict(handle_file(str(SHAPE)), 1024, 0, "efficientnet-lite0", 64, 0.8, -3.0,
                                 api_name="/guidance")
    assert "effective number of tokens" in numbers and "τ = 0.001" in numbers
    for endpoint in ("/chamfer_spread", "/tau_sweep"):
        figure = client.predict(handle_file(str(SHAPE)), 1024, 0, "efficientnet-lite0", 0.8, -3.0,
                                api_name=endpoint)
        assert figure["type"] == "plotly"


def test_surface_and_renders_endpoints(client):
    import trimesh

    view_random, view_guided, downloads, text = client.predict(
        handle_file(str(SHAPE)), 1024, 0, "efficientnet-lite0", 0.8, -3.0, 0, api_name="/surface")
    assert text.count("triangles") == 2
    assert sorted(Path(d).suffix for d in downloads) == [".glb", ".glb", ".ply", ".ply"]
    for view in (view_random, view_guided):
        assert len(trimesh.load(view, force="mesh").faces) > 100
    stills, note = client.predict(handle_file(str(SHAPE)), 1024, 0, "efficientnet-lite0", 64, 0.8, -3.0, 0,
                                  api_name="/renders")
    assert (len(stills) == 5 and note == "") or (stills == [] and "Open3D rendering" in note)


def test_a_burst_of_concurrent_requests_all_succeed(client):
    jobs = [client.submit(handle_file(str(SHAPE)), api_name="/classify") for _ in range(BURST)]
    results = [job.result(timeout=RESULT_TIMEOUT_S) for job in jobs]
    assert all(r["label"] == results[0]["label"] for r in results)


def _bad_files(folder: Path) -> dict[str, Path]:
    """Every kind of hostile upload: name -> file."""
    files = {
        "empty.ply": b"",
        "one_point.xyz": b"0.1 0.2 0.3\n",
        "junk.ply": np.random.default_rng(0).bytes(4096),
        "truncated.ply": (ASSETS / "ant.ply").read_bytes()[: (ASSETS / "ant.ply").stat().st_size // 2],
    }
    nan = io.BytesIO()
    np.save(nan, np.array([[0.0, 0.0, 0.0], [np.nan, 1.0, 2.0], [1.0, 1.0, 1.0]] * 50))
    files["nan.npy"] = nan.getvalue()
    pickled = io.BytesIO()
    np.save(pickled, np.array([{"points": [1, 2, 3]}], dtype=object), allow_pickle=True)
    files["pickled.npy"] = pickled.getvalue()
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("readme.txt", "not a shape")
    files["renamed_zip.off"] = archive.getvalue()
    files["payload.npz"] = pickle.dumps({"points": np.zeros((10, 3))})
    paths = {}
    for name, content in files.items():
        paths[name] = folder / name
        paths[name].write_bytes(content)
    return paths


def test_every_bad_file_is_a_readable_error_and_the_server_keeps_serving(client, tmp_path):
    for name, path in _bad_files(tmp_path).items():
        with pytest.raises(Exception) as info:  # noqa: PT011 - gradio_client raises AppError
            client.predict(handle_file(str(path)), api_name="/classify")
        message = str(info.value)
        assert name in message or "empty" in message, f"{name}: unreadable error {message!r}"
        assert "Traceback" not in message
    assert client.predict(handle_file(str(SHAPE)), api_name="/classify")["label"]


def test_five_million_points_are_refused(client, tmp_path):
    huge = tmp_path / "huge.npy"
    np.save(huge, np.random.default_rng(0).random((HUGE_POINTS, 3), dtype=np.float32))
    assert huge.stat().st_size > MAX_UPLOAD_BYTES
    with pytest.raises(Exception) as info:  # noqa: PT011 - refused at upload by gradio's max_file_size
        client.predict(handle_file(str(huge)), api_name="/classify")
    assert not isinstance(info.value, FutureTimeout)
    assert client.predict(handle_file(str(SHAPE)), api_name="/classify")["label"]


def _ablation_record() -> dict:
    """A 3-seed record of the random mask and guided τ = 1, built by ``scripts/ablation.py`` itself."""
    ablation = ablation_script()
    scores = {row: {seed: {"svm_accuracy": 0.9 + gain * (seed + 1), "fewshot_5way_10shot": 0.8 + gain,
                           "commit": "abc1234", "command": "x", "seconds": 1} for seed in range(3)}
              for row, gain in (("i2p-random", 0.0), ("i2p-guided-tau1", 0.01))}
    return ablation.build_record(scores, epochs=10, nproc=2)


def test_evidence_endpoint_answers_the_record_or_a_note(client, monkeypatch, tmp_path):
    record, path = _ablation_record(), tmp_path / "ablation.json"
    path.write_text(json.dumps(record, ensure_ascii=False))
    monkeypatch.setenv(evidence.EVIDENCE_ENV, str(path))  # read per request by the server in this process
    answer = client.predict(api_name="/evidence")
    assert answer == {**json.loads(json.dumps(record)), "sentences": evidence.sentences(record)}
    assert "ahead on 3 of 3 seeds" in answer["sentences"]["shown"]
    path.write_text('{"rows": [')
    assert "is not valid JSON" in client.predict(api_name="/evidence")["note"]
    monkeypatch.setenv(evidence.EVIDENCE_ENV, str(tmp_path / "missing.json"))
    answer = client.predict(api_name="/evidence")
    assert list(answer) == ["note"] and "does not exist" in answer["note"]
