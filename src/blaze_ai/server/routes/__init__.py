"""One module per API: models, chat, completions, images, embeddings, health, admin."""
