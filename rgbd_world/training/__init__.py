"""Training the small model stack: the tiny text encoders, the autoencoder, the base and the decoder fine-tune."""
