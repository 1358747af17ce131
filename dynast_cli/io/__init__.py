"""Reading and writing images, folders and videos. Models never see a file; this package does."""
