"""The base every package may import: records that cross process boundaries, the PNG codec, prompt files, the
config machinery and timing. It imports nothing else of the project."""
