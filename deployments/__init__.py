"""GPU side of the service: the TTS engine on moshi, the per-GPU model manager and the
`TTSWorker` Ray Serve deployment."""
