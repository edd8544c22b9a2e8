"""The words on the page: title, introduction and a short "how it works" note beside each panel."""

PAPER_URL = "https://arxiv.org/abs/2212.06785"

INTRO = f"""
# I2P-MAE Explorer
A masked autoencoder for point clouds learns by hiding most of a shape and predicting what is
missing. **I2P-MAE** ([Zhang et al., CVPR 2023]({PAPER_URL})) lets a frozen *2D* network decide
what to hide: it projects the shape to three depth images, asks an image model which pixels matter,
and keeps the important parts of the shape visible. Pick a shape below and follow it through the
pipeline, top to bottom.
"""

INPUT = """
**How it works.** Every file becomes the same thing: a cloud of *N* points, centred and scaled into
the unit sphere. Meshes are sampled on their surface (uniformly by area); point clouds are thinned
with farthest point sampling. The seed changes which points are drawn. Drag to rotate the shape.
"""

DEPTH = """
**How it works.** The 2D teacher cannot read points, so each shape is photographed three times
along the axes: each pixel stores the *summed* depth of the points that land on it (every point
covers a 5×5 block). These are the images the teacher sees. Look for thin parts that almost vanish
and for overlapping parts that show up brighter.
"""

SALIENCY = """
**How it works.** Top: where the frozen 2D teacher "looks" in each view (for CLIP, the attention of
its class token; for the EfficientNet teacher, the energy of its last feature map). Bottom: each
3D token (the centre of a local patch) reads the saliency at its pixel in all three views; the mean
is its **token saliency**. Bright tokens are the ones guided masking prefers to keep visible.
"""

MASKS = """
**How it works.** Both masks hide the same number of tokens (the *mask ratio*). **Random** masking
picks the visible tokens uniformly. **2D-guided** masking samples them from softmax(saliency / τ).
Both masks use the same seed, so they start from the same random draw and every difference is due
to the saliency. The mask is drawn on the top level (64 tokens) and passed down: a finer token
stays visible only if it is a neighbour of a visible coarser one.

**At the paper's τ = 1 the bias is weak.** A token's saliency is at most 1 (CLIP's attention, or
here a map that sums to 1 over 196 patches), so the most and the least likely token differ in
probability by a factor of at most e ≈ 2.7 with CLIP, and by about 1 % with the shipped teacher:
the guided mask is almost the random one. The page opens on **strong guidance** (τ = 10⁻³), where
the most salient tokens nearly always stay visible; the *paper* preset shows the official setting.
"""

SAMPLER = """
**What the sampler really does.** One draw says little, so the page draws a thousand masks and
counts how often each token stays visible. Left: the chance on every token under each mask. Right:
the chance against the token's saliency rank, for random masking (τ = ∞, a flat line at
visible / all), the paper's τ = 1, the current τ and the greedy limit τ → 0 (the most salient
tokens always visible). The table says how strong the guidance is: the ratio between the most and
the least likely token in softmax(s / τ), the *effective number of tokens* (the perplexity of
softmax(s / τ): all 64 when uniform, 1 when greedy), and the share of the total saliency that stays
visible, averaged over the draws.
"""

RECONSTRUCTION = """
**How it works.** The pre-trained encoder sees only the visible tokens; the decoder predicts the
points of every masked token of the middle level (256 tokens in the paper). Blue: what the encoder
saw; green: the hidden ground truth; red: the prediction. The Chamfer distance (lower is better)
measures how far the predicted points lie from the true ones, in both directions: per token it is the
training loss; over all masked points together it is the completion literature's Chamfer-L2. The
Hausdorff distance is the worst miss, and the F-score the share of points within d of the other set
(precision and recall, 1 is perfect).
"""

OPEN3D = """
**How it works.** The same layers rendered by Open3D from one fixed camera: the shape, each mask's
visible (blue) and masked (grey) tokens, and each reconstruction. Below, a surface is built from each
reconstruction (the visible input together with the prediction) with Open3D; turn it in the viewer or
download it. Open3D runs in a separate process with a time limit: if it fails, the panel says so and
the plots above remain.
"""

CLASSIFY = """
**How it works.** The encoder turns the whole shape (nothing masked) into one feature vector; a
linear classifier trained on ModelNet10 features gives a confidence per class. The model never
saw labels during pre-training, so good accuracy means the features are meaningful by themselves.

**Honest answers.** The classifier always names one of its 10 classes, an airplane included. The
*novelty score* says how unlike every ModelNet10 training shape this feature is (a relative
Mahalanobis distance); above the threshold, set so that 5 % of held-out training shapes exceed it,
the page says the shape is not one of the classes the classifier knows.
"""

SPREAD = """
**Over many draws.** A reconstruction depends on which tokens happen to be hidden, so one draw can
mislead. Left: the Chamfer-L2 of the pre-trained model for 32 mask seeds under each mask (every dot
is one draw). Right: how the temperature trades the saliency the encoder sees (solid, left axis)
against the Chamfer-L2 of what it must rebuild (dashed, right axis; dotted lines: random masking).
Lower τ keeps more of the salient tokens visible; whether that makes the hidden parts easier or
harder to rebuild is what the dashed curve measures, for this shape and this checkpoint.
"""

FEW_SHOT = """
**How it works.** *N-way K-shot*: pick N classes and K labelled examples of each (the *support*);
a linear classifier fitted on their features must label unseen *query* shapes of the same classes.
The plot squeezes the features to 2D (PCA): when the classes form separate clusters, few examples
suffice. Upload your own support files to teach new classes: name them `<class>_<number>.<ext>`
(e.g. `mug_1.obj`, `mug_2.obj`, `lamp_1.ply`).
"""

EVIDENCE = """
**Does it help here?** This is not about the shape above: it is the seeded ablation of
`scripts/ablation.py`. Every row pre-trains the same small network with the same budget, once per seed
(the seed sets the initialisation, data order, masks and augmentation), and is then scored with a linear
SVM and 5-way 10-shot classification on ModelNet10. Top: each dot is one seed, the diamond the mean with
its 95 % interval. Bottom: guided − random paired by seed (same seed, same start), against the dashed 0.
An interval that excludes 0 *shows* an effect; one that spans 0 only *suggests* it. The sentences and
the table are computed from `docs/ablation.json` when the page loads.
"""
