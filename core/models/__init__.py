"""Models: the BERT preference model, the pretrained text encoder, model folders
(checkpoints) and their registry against the store (names, import, lookup), and the
scorer interface evaluation and serving rank with."""
