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
τ = 1 is the paper's setting; saliency values are small (about 0.01), so the bias is weak there.
Lower τ to make the guidance greedy (τ ≈ 0.00001 keeps the most salient tokens), raise it to make
it random. Compare the mean saliency of the visible tokens and how many of the 10 most salient
tokens survive. Both masks use the same seed, so they start from the same random draw: at τ = 1
they often coincide, which shows how weak the guidance is there. The mask is drawn on the top level
(64 tokens) and passed down: a finer token stays visible only if it is a neighbour of a visible
coarser one.
"""

RECONSTRUCTION = """
**How it works.** The pre-trained encoder sees only the visible tokens; the decoder predicts the
points of every masked token of the middle level (256 tokens in the paper). Blue: what the encoder
saw; green: the hidden ground truth; red: the prediction. The Chamfer distance (lower is better)
measures how far the predicted points lie from the true ones, in both directions.
"""

CLASSIFY = """
**How it works.** The encoder turns the whole shape (nothing masked) into one feature vector; a
linear classifier trained on ModelNet10 features gives a confidence per class. The model never
saw labels during pre-training, so good accuracy means the features are meaningful by themselves.
"""

FEW_SHOT = """
**How it works.** *N-way K-shot*: pick N classes and K labelled examples of each (the *support*);
a linear classifier fitted on their features must label unseen *query* shapes of the same classes.
The plot squeezes the features to 2D (PCA): when the classes form separate clusters, few examples
suffice. Upload your own support files to teach new classes: name them `<class>_<number>.<ext>`
(e.g. `mug_1.obj`, `mug_2.obj`, `lamp_1.ply`).
"""
