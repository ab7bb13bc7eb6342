"""Reading inputs and writing outputs: images, result rows, writers, drawings, atomic files."""
