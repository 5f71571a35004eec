"""Provider batch APIs (OpenAI Files + Batches): request files, a journal of what reached the
provider, and the HTTP client. Issue 15; the engine does not use it yet."""
