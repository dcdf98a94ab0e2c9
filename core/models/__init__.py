"""Models: the BERT preference model, the pretrained text encoder, model folders
(checkpoints) and their registry against the store (names, import, lookup), the
scorer interface evaluation and serving rank with, and the counting baselines that share it."""
