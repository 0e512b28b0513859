"""Image files in every mode PIL reads, converted for the model: none refused, each done right."""
import numpy as np
import pytest
from PIL import Image

from heatkit.base.errors import UsageError
from heatkit.base.images import load_image


def save(tmp_path, name, image, **kwargs):
    path = tmp_path / name
    image.save(path, **kwargs)
    return path


def test_16_bit_gray_keeps_its_16_bits(tmp_path):
    values = np.array([[0, 257, 40000], [65535, 1000, 30000]], dtype=np.uint16)
    path = save(tmp_path, "deep.png", Image.fromarray(values))
    np.testing.assert_allclose(load_image(path, (2, 3, 1))[..., 0], values / 65535, atol=1e-6)
    assert len(np.unique(load_image(path, (2, 3, 1)))) == 6  # 257 and 1000 are not rounded to 8 bits


def test_rgba_drops_its_alpha_and_keeps_the_colors(tmp_path):
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 0], rgba[..., 1], rgba[..., 2], rgba[..., 3] = 200, 100, 50, 0
    path = save(tmp_path, "alpha.png", Image.fromarray(rgba, "RGBA"))
    np.testing.assert_allclose(load_image(path, (4, 4, 3))[0, 0], np.array([200, 100, 50]) / 255)


def test_cmyk_becomes_rgb(tmp_path):
    cmyk = Image.new("CMYK", (5, 5), (0, 255, 255, 0))  # pure red in ink
    path = save(tmp_path, "ink.tif", cmyk)
    np.testing.assert_allclose(load_image(path, (5, 5, 3))[2, 2], [1.0, 0.0, 0.0])


def test_palette_images_use_their_palette(tmp_path):
    image = Image.new("P", (3, 3))
    image.putpalette([0, 0, 0, 10, 20, 30] + [0] * 762)
    image.putpixel((1, 1), 1)
    path = save(tmp_path, "palette.png", image)
    rgb = load_image(path, (3, 3, 3))
    np.testing.assert_allclose(rgb[1, 1], np.array([10, 20, 30]) / 255)
    np.testing.assert_allclose(load_image(path, (3, 3, 1))[1, 1, 0], round(0.299 * 10 + 0.587 * 20 + 0.114 * 30) / 255,
                               atol=1 / 255)


def test_exif_rotation_is_applied(tmp_path):
    pixels = np.zeros((2, 4), np.uint8)
    pixels[0, 0] = 255  # a white pixel at the stored top left
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 clockwise to view"
    path = save(tmp_path, "turned.jpg", Image.fromarray(pixels), exif=exif, quality=100)
    upright = load_image(path, (4, 2, 1))[..., 0]
    assert upright.shape == (4, 2) and upright[0, 1] > 0.8 and upright[0, 0] < 0.2


def test_images_over_the_pixel_limit_are_refused_unread(tmp_path):
    path = save(tmp_path, "big.png", Image.new("L", (300, 200)))
    with pytest.raises(UsageError, match="more than the limit of 50,000"):
        load_image(path, (8, 8, 1), max_pixels=50_000)


def test_center_crop_keeps_the_middle_of_a_wide_image_and_squash_keeps_it_all(tmp_path):
    pixels = np.zeros((10, 30), np.uint8)
    pixels[:, 10:20] = 255  # a white middle third
    path = save(tmp_path, "wide.png", Image.fromarray(pixels))
    assert load_image(path, (10, 10, 1), resize="center_crop").min() > 0.9  # the middle third alone
    squashed = load_image(path, (10, 10, 1))
    assert squashed[:, 0].max() < 0.1 and squashed[:, 5].min() > 0.9  # all three thirds, narrowed
