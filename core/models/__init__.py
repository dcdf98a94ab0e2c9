"""Models: the BERT preference model, the pretrained text encoder, model folders
(checkpoints) and the scorer interface evaluation and serving rank with."""
