"""Image conversion: decode, orient, resize and encode still and animated images."""
