"""Generation behind the OpenAI-compatible API: model cache, watermarked sampling, batching."""
