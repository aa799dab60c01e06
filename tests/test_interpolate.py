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


def reference(table: torch.Tensor, grid: int, mode: str, antialias: bool = False, prefix: int = 1) -> torch.Tensor:
    """The documented method, written out with F.interpolate: prefix rows kept, the grid as
    (1, C, h, w) in row-major order, `size=`, align_corners False where the mode takes it, float32."""
    import torch.nn.functional as F

    old = int((table.shape[0] - prefix) ** 0.5)
    cells = table[prefix:].float().reshape(1, old, old, -1).permute(0, 3, 1, 2)
    if mode in ("bicubic", "bilinear"):
        new = F.interpolate(cells, size=(grid, grid), mode=mode, align_corners=False, antialias=antialias)
    else:
        new = F.interpolate(cells, size=(grid, grid), mode=mode)
    return torch.cat([table[:prefix].float(), new.permute(0, 2, 3, 1).reshape(grid * grid, -1)]).to(table.dtype)


@pytest.mark.parametrize("grid", [16, 35])
@pytest.mark.parametrize(
    ("mode", "antialias"),
    [("bicubic", True), ("bilinear", False), ("bilinear", True), ("nearest", False), ("area", False)],
)
def test_other_modes_equal_f_interpolate(mode: str, antialias: bool, grid: int) -> None:
    """Every method, down (24 → 16) and up (24 → 35), against F.interpolate called here, exactly."""
    torch.manual_seed(grid)
    table = torch.randn(1 + 24 * 24, 8)
    out = resample_grid(table, (grid, grid), mode=mode, antialias=antialias)
    assert out.shape == (1 + grid * grid, 8)
    assert torch.equal(out, reference(table, grid, mode, antialias))
    assert not torch.equal(out, resample_grid(table, (grid, grid))), "not the default bicubic under another name"


def test_antialias_changes_numbers_even_when_upsampling() -> None:
    table = torch.randn(1 + 24 * 24, 8)
    plain = resample_grid(table, (35, 35))
    aa = resample_grid(table, (35, 35), antialias=True)
    assert torch.equal(aa, reference(table, 35, "bicubic", antialias=True))
    assert not torch.equal(aa, plain)


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


def within_one_ulp(got: torch.Tensor, want: torch.Tensor) -> bool:
    """Every value of `got` is the float of `want` or one of its two neighbours in that dtype: the
    "up to 1 ulp" docs/how-it-works.md and docs/cli.md promise for CUDA's bicubic kernel."""
    return got.dtype == want.dtype and bool(((got == want) | (got == torch.nextafter(want, got))).all())


def test_the_one_ulp_bound_is_one_ulp() -> None:
    """The bound the GPU tests use passes a neighbouring float and fails the next one, at any magnitude."""
    want = torch.tensor([1.0, -3.5, 1e-30, 0.0, 2.0**20])
    up = torch.nextafter(want, torch.full_like(want, torch.inf))
    down = torch.nextafter(want, torch.full_like(want, -torch.inf))
    assert within_one_ulp(want, want) and within_one_ulp(up, want) and within_one_ulp(down, want)
    two_up = torch.nextafter(up, torch.full_like(want, torch.inf))
    for i in range(len(want)):
        wrong = up.clone()
        wrong[i] = two_up[i]
        assert not within_one_ulp(wrong, want), i
    assert not within_one_ulp(want.double(), want.double().float()), "dtypes must agree"


@pytest.mark.gpu
def test_cuda_matches_cpu() -> None:
    torch.manual_seed(0)
    table = torch.randn(1 + 24 * 24, 1024)
    for grid in (16, 35, 40):
        cpu = resample_grid(table, (grid, grid))
        gpu = resample_grid(table, (grid, grid), device="cuda")
        assert gpu.device.type == "cpu"
        assert within_one_ulp(gpu, cpu), (grid, (gpu - cpu).abs().max())


def test_auto_device_is_cuda_when_present_else_cpu() -> None:
    from xcomposer_resize.interpolate import resample_grid

    table = torch.randn(1 + 24 * 24, 8)
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    auto = resample_grid(table, (35, 35), device="auto")
    assert auto.device == table.device
    assert torch.equal(auto, resample_grid(table, (35, 35), device=expected))
