"""Models: the BERT preference model (its dropout cheap to draw on a CPU), the one input
builder (a history -> what the model reads), the pretrained text encoder, model folders
(checkpoints with their typed training record) and their registry against the store
(names, import, lookup), the scorer interface evaluation and serving rank with, and the
counting baselines that share it."""
