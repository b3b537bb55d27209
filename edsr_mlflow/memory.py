"""How much memory an upscale needs, known from the image's header before a pixel is decoded:
the tile to run it with, or one line saying why it cannot run here.

A 258 KB PNG can hold 81 megapixels of one colour; whole-image inference of it took more than
13 GB. What an upscale holds at its peak, per LR pixel of the image (``scale`` squared HR pixels
each), and per LR pixel of the part the model sees at once (the whole image, or a tile with its
context):

- the decoded image, 3 bytes, and Pillow's buffer while decoding, 4 more;
- the uint8 output, 3 bytes per HR pixel (tiled inference writes each tile into it as uint8;
  PNG is written row strip by row strip, so saving adds little);
- the model's working set: the largest few feature maps at once, float32, counted on the
  model itself (:func:`edsr_mlflow.model.feature_bytes_per_lr_pixel`), times
  :data:`WORKING_SET_FACTOR` for what TensorFlow holds beside them (the float input, oneDNN's
  buffers): whole-image inference of a 1500x1500 image (x2, 1 block, 8 filters) took 613 bytes
  per LR pixel where 304 are counted (``benchmarks/upscale_memory.py``).

No TensorFlow here: the plan is made before the image, and can be tested without a model.
"""

from __future__ import annotations

from dataclasses import dataclass

from .edsr_pyfunc import TILE_OVERLAP
from .errors import DataError

DECODE_BYTES_PER_LR_PIXEL = 3 + 4  # numpy's RGB copy and Pillow's 4-byte pixels while decoding
OUTPUT_BYTES_PER_HR_PIXEL = 3  # the uint8 output
AUTO_TILES = (256, 128, 64)  # tried in turn when the whole image does not fit
WHOLE_IMAGE_MAX_PIXELS = 512 * 512  # without --tile: whole-image inference up to this many LR pixels
WORKING_SET_FACTOR = 2.0
GB = 1e9


@dataclass(frozen=True)
class UpscalePlan:
    """The tile to run with (0: the whole image) and the bytes it is estimated to need."""

    tile: int
    estimated_bytes: int


def upscale_bytes(width: int, height: int, scale: int, tile: int, feature_bytes_per_lr_pixel: float) -> int:
    """Estimated peak bytes of upscaling a ``width`` x ``height`` LR image ``scale`` times with
    ``tile`` (0: whole image); the model's working set from ``feature_bytes_per_lr_pixel``."""
    lr_pixels = width * height
    seen = lr_pixels if not tile else (min(tile, height) + 2 * TILE_OVERLAP) * (min(tile, width) + 2 * TILE_OVERLAP)
    return int(lr_pixels * DECODE_BYTES_PER_LR_PIXEL + lr_pixels * scale * scale * OUTPUT_BYTES_PER_HR_PIXEL
               + min(seen, lr_pixels) * feature_bytes_per_lr_pixel * WORKING_SET_FACTOR)


def plan_upscale(width: int, height: int, scale: int, tile: int | None, feature_bytes_per_lr_pixel: float,
                 available_bytes: int, image_name: str = "the image") -> UpscalePlan:
    """The tile to upscale with: ``tile`` as asked (0: whole image), or, for None, the whole
    image up to :data:`WHOLE_IMAGE_MAX_PIXELS` and within ``available_bytes``, else the largest
    of :data:`AUTO_TILES` that fits.

    Raises:
        DataError: it cannot fit in ``available_bytes``; one line with the size, the estimate
            and the ``--tile`` that would fit, if any.
    """
    def needs(side: int) -> int:
        return upscale_bytes(width, height, scale, side, feature_bytes_per_lr_pixel)

    if tile is None:
        whole_fits = width * height <= WHOLE_IMAGE_MAX_PIXELS and needs(0) <= available_bytes
        candidates = (0,) if whole_fits else AUTO_TILES
    else:
        candidates = (tile,)
    for side in candidates:
        if needs(side) <= available_bytes:
            return UpscalePlan(side, needs(side))
    asked = candidates[-1]
    size = f"{image_name} ({width}x{height}, x{scale}: {width * height * scale * scale / 1e6:,.0f} megapixels out)"
    fitting = [side for side in AUTO_TILES if needs(side) <= available_bytes]
    how = "the whole image" if asked == 0 else f"tiles of {asked}"
    fix = f"pass --tile {fitting[0]} (about {needs(fitting[0]) / GB:.1f} GB)" if fitting and tile is not None else \
        "crop or split the image first, or use a machine with more memory"
    raise DataError(f"{size} needs about {needs(asked) / GB:.1f} GB with {how}, more than the "
                    f"{available_bytes / GB:.1f} GB available; {fix}")
