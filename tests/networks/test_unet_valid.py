"""The unpadded U-Net: size arithmetic against the paper, shapes in 2D/3D, overlap-tile seams."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from medseg.errors import InputError
from medseg.inference.overlap_tile import OverlapTileInferer, overlap_tile_inference
from medseg.networks.unet_valid import UNetValid, input_size_for_output, output_size, valid_input_size


def test_paper_sizes():
    assert output_size((572, 572), depth=4) == (388, 388)  # Ronneberger et al. 2015, Fig. 1
    assert valid_input_size(570) == 572 and valid_input_size(573, below=True) == 572
    assert input_size_for_output(388) == 572


@pytest.mark.parametrize("depth", [2, 3])
@pytest.mark.parametrize("size", range(40, 80, 3))
def test_size_arithmetic_matches_the_network(depth, size, monkeypatch):
    """Run the layers themselves (our size check switched off) and record what pooling sees."""
    import medseg.networks.unet_valid as module

    net = UNetValid(2, 1, 1, features=2, depth=depth).eval()
    monkeypatch.setattr(module, "output_size", lambda *a, **k: None)
    pooled = []
    net.pool.register_forward_hook(lambda m, inputs, out: pooled.append(inputs[0].shape[2]))
    try:
        shape = tuple(net(torch.zeros(1, 1, size, size)).shape[2:])
    except RuntimeError:  # a convolution ran out of pixels
        shape = None
    monkeypatch.undo()
    if shape is None or any(p % 2 for p in pooled) or min(shape) < 1:
        with pytest.raises(InputError):  # odd sizes would be floored by pooling: refused
            output_size(size, depth)
    else:
        assert output_size((size, size), depth) == shape


def test_invalid_size_names_the_nearest_valid_ones():
    with pytest.raises(InputError, match="input size 570 is not valid.*nearest valid sizes: 556, 572"):
        output_size(570)


@pytest.mark.parametrize(
    "spatial_dims, tile, image", [(2, (92, 76), (130, 111)), (3, (44, 44, 44), (30, 50, 41))]
)
def test_overlap_tile_equals_one_pass_over_the_mirrored_image(spatial_dims, tile, image):
    """Tiles laid edge to edge give exactly what one big forward over the mirrored image gives."""
    torch.manual_seed(0)
    depth = 2
    net = UNetValid(spatial_dims, 1, 3, features=4, depth=depth, norm=True).eval()
    x = torch.randn(1, 1, *image)
    with torch.no_grad():
        tiled = overlap_tile_inference(x, net, tile, batch_size=3)
        # Reference: pad by the margin with numpy's mirror, choose a valid size, one forward pass.
        margin = (tile[0] - output_size(tile, depth)[0]) // 2
        big = [input_size_for_output(s + 0, depth) for s in image]
        pads = [(margin, b - s - margin) for b, s in zip(big, image, strict=True)]
        padded = torch.from_numpy(np.pad(x.numpy(), [(0, 0), (0, 0), *pads], mode="reflect"))
        whole = net(padded)[(slice(None), slice(None), *(slice(0, s) for s in image))]
    assert tiled.shape == (1, 3, *image)
    torch.testing.assert_close(tiled, whole, atol=1e-5, rtol=1e-5)


def test_inferer_keeps_meta_and_works_on_a_batch():
    net = UNetValid(2, 2, 2, features=2, depth=1).eval()
    x = MetaTensor(torch.randn(2, 2, 33, 20), affine=torch.diag(torch.tensor([0.5, 0.5, 1.0, 1.0])))
    with torch.no_grad():
        out = OverlapTileInferer(tile_size=(28, 28))(x, net)
        single = overlap_tile_inference(x[1:].as_tensor(), net, (28, 28))
    assert isinstance(out, MetaTensor) and out.shape == (2, 2, 33, 20)
    torch.testing.assert_close(out.affine, x.affine)
    torch.testing.assert_close(out[1:].as_tensor(), single, atol=1e-6, rtol=1e-6)


def test_overlap_tile_mirroring_is_symmetric_on_a_symmetric_image():
    torch.manual_seed(1)
    net = UNetValid(2, 1, 2, features=4, depth=2, norm=True).eval()
    x = torch.randn(1, 1, 61, 47)
    x = x + x.flip(2) + x.flip(3) + x.flip(2, 3)
    with torch.no_grad():
        plain = OverlapTileInferer(tile_size=(92, 76))(x, net)
        mirrored = OverlapTileInferer(tile_size=(92, 76), mirror_axes=(0, 1))(x, net)
        by_hand = (
            sum(  # the mean of the four mirrored images' predictions, flipped back
                overlap_tile_inference(x.flip(d), net, (92, 76)).flip(d)
                if d
                else overlap_tile_inference(x, net, (92, 76))
                for d in [(), (2,), (3,), (2, 3)]
            )
            / 4
        )
    assert (plain - plain.flip(2)).abs().max() > 1e-3  # the network alone is not symmetric
    for dim in (2, 3):
        torch.testing.assert_close(mirrored, mirrored.flip(dim), atol=1e-5, rtol=0)
    torch.testing.assert_close(mirrored, by_hand, atol=1e-6, rtol=0)
