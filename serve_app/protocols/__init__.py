"""Wire shapes and codecs only: what clients send and receive, no serving logic."""
