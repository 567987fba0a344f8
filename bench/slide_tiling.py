"""Speed and peak memory of cutting a whole-slide image into tiles: the on-disk store vs reading it whole.

Writes square test slides (tiled pyramidal TIFF, two levels, a disc of real H&E tiles covering
about half of it on white) of each `--sides`, then cuts each in a fresh child process two ways:

* store: `cldm_nb.slides.load_data` (tissue detection on a thumbnail, tiles read one by one and
  written to `tiles.npy` as they are cut), as `cldm run --data SLIDE` does;
* baseline: read level 0 whole with OpenSlide and cut it with `cldm_nb.data.tile_image` (as
  `--tile_large` does for an ordinary image), keeping the same tiles in memory.

Prints tiles per second and each child's peak resident memory above the memory it holds after its
imports (peak RSS − RSS after imports), with the ratios store / baseline.

    python bench/slide_tiling.py                          # sides 8192 and 16384
    python bench/slide_tiling.py --sides 4096 8192 16384 32768
"""
from __future__ import annotations
import argparse, json, subprocess, sys, tempfile
from pathlib import Path

CHILD = r'''
import json, resource, sys, time
from pathlib import Path
import numpy as np, openslide
from cldm_nb.slides import load_data
from cldm_nb.data import tile_image
def rss_gb(): return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
mode, slide, out = sys.argv[1], sys.argv[2], sys.argv[3]
s = openslide.OpenSlide(slide); s.read_region((0, 0), 0, (1, 1)); s.close()
base = rss_gb(); t = time.perf_counter()
if mode == 'store':
    n = len(load_data(slide, out, min_tissue=0.5)[0])
else:
    with openslide.OpenSlide(slide) as s: img = np.asarray(s.read_region((0, 0), 0, s.dimensions).convert('RGB'))
    n = len(tile_image(img, 128, min_tissue=0.5))
print(json.dumps(dict(n=n, seconds=time.perf_counter() - t, base_gb=base, peak_gb=rss_gb())))
'''


def write_slide(path: Path, side: int) -> Path:
    "A `side`×`side` two-level tiled TIFF: a disc of sample tiles (half the area) on white, 0.25 µm/px, written tile by tile."
    import numpy as np, tifffile
    from PIL import Image
    from cldm_nb.data import load_tiles, sample_data
    tiles = load_tiles(sample_data()); r2 = side * side / (2 * np.pi)            # disc of half the area

    def block(y: int, x: int, n: int) -> np.ndarray:
        "Level-0 pixels of the n×n block at (y, x): sample tiles inside the disc, white outside."
        out = np.full((n, n, 3), 255, np.uint8)
        for ty in range(0, n, 128):
            for tx in range(0, n, 128):
                cy, cx = y + ty + 64 - side / 2, x + tx + 64 - side / 2
                if cy * cy + cx * cx < r2: out[ty:ty + 128, tx:tx + 128] = tiles[((y + ty) // 128 * 7919 + (x + tx) // 128) % len(tiles)]
        return out

    def level(lvl: int):
        n, f = 256, 2 ** lvl
        for y in range(0, side // f, n):
            for x in range(0, side // f, n):
                b = block(y * f, x * f, n * f)
                yield b if f == 1 else np.asarray(Image.fromarray(b).reduce(f))

    with tifffile.TiffWriter(path, bigtiff=True) as tif:
        for lvl in range(2):
            tif.write(level(lvl), shape=(side >> lvl, side >> lvl, 3), dtype='uint8', tile=(256, 256), photometric='rgb',
                      compression='zlib', subfiletype=int(lvl > 0), resolution=(4e4 / 2**lvl,) * 2, resolutionunit='CENTIMETER')
    return path


def child(mode: str, slide: Path, out: Path) -> dict:
    "Cut `slide` in a fresh process; its tile count, seconds and peak RSS."
    r = subprocess.run([sys.executable, '-c', CHILD, mode, str(slide), str(out)], capture_output=True, text=True)
    if r.returncode: raise SystemExit(f"{mode} on {slide} failed:\n{r.stderr[-3000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--sides', type=int, nargs='+', default=[8192, 16384], help='slide sides in px (multiples of 512)')
    args = ap.parse_args()
    print(f"{'slide':>13}{'tiles':>8}{'store tiles/s':>15}{'base tiles/s':>14}{'store ΔRSS GB':>15}{'base ΔRSS GB':>14}{'RSS ratio':>11}")
    with tempfile.TemporaryDirectory(prefix='cldm-tiling-') as tmp:
        for side in args.sides:
            slide = write_slide(Path(tmp) / f'slide{side}.tiff', side)
            st, bl = child('store', slide, Path(tmp) / f'out{side}'), child('baseline', slide, Path(tmp) / 'none')
            if st['n'] != bl['n']: print(f"  note: the store kept {st['n']} tiles, the baseline's pixel test {bl['n']}")
            ds, db = st['peak_gb'] - st['base_gb'], bl['peak_gb'] - bl['base_gb']
            print(f"{side:>6}×{side:<6}{st['n']:>8}{st['n'] / st['seconds']:>15.0f}{bl['n'] / bl['seconds']:>14.0f}"
                  f"{ds:>15.3f}{db:>14.3f}{ds / db:>11.3f}")
            slide.unlink()


if __name__ == '__main__':
    main()
