"""resample_grid: the numerical contract, proven against transformers' own interpolate_pos_encoding."""

from __future__ import annotations

import pytest
import torch

from xcomposer_resize.interpolate import grid_side, resample_grid


def transformers_table(table: torch.Tensor, grid: int, patch: int = 14) -> torch.Tensor:
    """What transformers' CLIPVisionEmbeddings.interpolate_pos_encoding computes for `grid`."""
    from transformers import CLIPVisionConfig
    from transformers.models.clip.modeling_clip import CLIPVisionEmbeddings

    rows, width = table.shape
    old = int((rows - 1) ** 0.5)
    emb = CLIPVisionEmbeddings(
        CLIPVisionConfig(hidden_size=width, num_attention_heads=1, image_size=old * patch, patch_size=patch)
    )
    with torch.no_grad():
        emb.position_embedding.weight.copy_(table)
        out = emb.interpolate_pos_encoding(torch.zeros(1, 1 + grid * grid, width), grid * patch, grid * patch)
    return out[0]


@pytest.mark.parametrize("new", [16, 35, 40, 24 + 1, 7])
@pytest.mark.parametrize("width", [32, 1024])
def test_bicubic_equals_transformers_bit_for_bit(new: int, width: int) -> None:
    torch.manual_seed(new + width)
    table = torch.randn(1 + 24 * 24, width)
    ours = resample_grid(table, (new, new))
    assert ours.shape == (1 + new * new, width)
    assert ours.dtype == torch.float32
    assert torch.equal(ours, transformers_table(table, new))


def test_prefix_rows_are_copied_not_interpolated() -> None:
    table = torch.randn(3 + 8 * 8, 4)
    out = resample_grid(table, (5, 5), num_prefix_tokens=3)
    assert out.shape == (3 + 25, 4)
    assert torch.equal(out[:3], table[:3])


def test_grid_is_row_major_h_then_w() -> None:
    # a table whose value is the row index h: resampling keeps it constant along w
    h = torch.arange(6.0).repeat_interleave(6)
    table = torch.cat([torch.zeros(1, 2), torch.stack([h, torch.zeros_like(h)], 1)])
    out = resample_grid(table, (9, 9))[1:, 0].reshape(9, 9)
    assert torch.allclose(out, out[:, :1].expand(9, 9))
    assert not torch.allclose(out, out[:1, :].expand(9, 9))


def test_same_grid_returns_the_tensor_untouched() -> None:
    table = torch.randn(1 + 24 * 24, 8)
    assert resample_grid(table, (24, 24)) is table


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_other_dtypes_compute_in_float32_and_cast_back(dtype: torch.dtype) -> None:
    table = torch.randn(1 + 24 * 24, 16).to(dtype)
    out = resample_grid(table, (35, 35))
    assert out.dtype == dtype
    expected = transformers_table(table.float(), 35).to(dtype)
    assert torch.equal(out, expected)
    if dtype != torch.float64:  # interpolating in half precision directly gives other numbers
        direct = torch.nn.functional.interpolate(
            table[1:].reshape(1, 24, 24, 16).permute(0, 3, 1, 2), size=(35, 35), mode="bicubic", align_corners=False
        )
        assert not torch.equal(out[1:], direct.permute(0, 2, 3, 1).reshape(-1, 16))


def test_batched_input_keeps_its_batch_dim() -> None:
    table = torch.randn(1, 1 + 4 * 4, 8)
    out = resample_grid(table, (6, 6))
    assert out.shape == (1, 1 + 36, 8)
    assert torch.equal(out[0], resample_grid(table[0], (6, 6)))


def test_non_square_target_and_explicit_old_grid() -> None:
    table = torch.randn(1 + 4 * 6, 3)
    out = resample_grid(table, (8, 2), old_grid=(4, 6))
    assert out.shape == (1 + 16, 3)


def test_antialias_changes_numbers_even_when_upsampling() -> None:
    table = torch.randn(1 + 24 * 24, 8)
    plain = resample_grid(table, (35, 35))
    aa = resample_grid(table, (35, 35), antialias=True)
    assert aa.shape == plain.shape and not torch.equal(aa, plain)


@pytest.mark.parametrize("mode", ["bilinear", "nearest", "area"])
def test_other_modes_differ_from_bicubic(mode: str) -> None:
    table = torch.randn(1 + 24 * 24, 8)
    out = resample_grid(table, (16, 16), mode=mode)
    assert out.shape == (1 + 256, 8)
    assert torch.equal(out[0], table[0])
    assert not torch.equal(out, resample_grid(table, (16, 16)))


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="unknown mode"):
        resample_grid(torch.zeros(5, 2), (3, 3), mode="lanczos")
    with pytest.raises(ValueError, match="antialias"):
        resample_grid(torch.zeros(5, 2), (3, 3), mode="nearest", antialias=True)
    with pytest.raises(ValueError, match="square grid"):
        resample_grid(torch.zeros(6, 2), (3, 3))
    with pytest.raises(ValueError, match="rows"):
        resample_grid(torch.zeros(5, 2), (3, 3), old_grid=(3, 3))


def test_grid_side() -> None:
    assert grid_side(576) == 24 and grid_side(1225) == 35
    assert grid_side(575) is None and grid_side(0) is None and grid_side(-4) is None


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_matches_cpu() -> None:
    torch.manual_seed(0)
    table = torch.randn(1 + 24 * 24, 1024)
    cpu = resample_grid(table, (35, 35))
    gpu = resample_grid(table, (35, 35), device="cuda")
    assert gpu.device.type == "cpu"
    assert torch.allclose(gpu, cpu, rtol=0, atol=1e-5)


def test_auto_device_is_cuda_when_present_else_cpu() -> None:
    from xcomposer_resize.interpolate import resample_grid

    table = torch.randn(1 + 24 * 24, 8)
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    auto = resample_grid(table, (35, 35), device="auto")
    assert auto.device == table.device
    assert torch.equal(auto, resample_grid(table, (35, 35), device=expected))
