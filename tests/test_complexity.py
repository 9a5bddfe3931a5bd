"""Parameter and MAC counting, checked by hand, and tools/get_flops.py on a real config."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from conftest import QUICKSTART, ROOT, TINY_OPTIONS, load_tool
from torch import nn

from vision_mtl.apis import init_model
from vision_mtl.complexity import count_macs, count_parameters


class Toy(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.backbone = nn.Conv2d(3, 8, 3, padding=1)
        self.decoder = nn.Linear(8, 8)
        self.heads = nn.ModuleDict({"a": nn.Linear(8, 2), "b": nn.Linear(8, 1)})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.backbone(x).flatten(2).transpose(1, 2)  # B × 256 × 8
        q = k = v = self.decoder(tokens).unsqueeze(1)  # one head of width 8
        attn = F.scaled_dot_product_attention(q, k, v).squeeze(1)
        return torch.cat([head(attn) for head in self.heads.values()], dim=-1)


def test_macs_by_hand_including_attention_and_uncalled_containers():
    macs = count_macs(Toy(), torch.zeros(1, 3, 16, 16))
    assert macs["backbone"] == 8 * 3 * 9 * 256  # conv: out × in × k² × positions
    assert macs["decoder"] == 256 * 8 * 8
    assert macs["heads"] == 256 * 8 * (2 + 1)  # the ModuleDict is never called itself
    assert macs["other"] == 2 * 256 * 256 * 8  # q @ kᵀ and attn @ v, seen on the MATH backend
    assert macs["total"] == sum(v for k, v in macs.items() if k != "total")


def test_layer_macs_by_hand_including_a_transposed_convolution():
    """Per-layer MACs from the same counter: the parts of the component totals."""
    from vision_mtl.complexity import layer_macs

    model = Toy()
    up = nn.ConvTranspose2d(8, 4, 3, stride=2, padding=1, output_padding=1)
    macs = layer_macs(model, torch.zeros(1, 3, 16, 16))
    assert macs == {
        model.backbone: 8 * 3 * 9 * 256,
        model.decoder: 256 * 8 * 8,
        model.heads["a"]: 256 * 8 * 2,
        model.heads["b"]: 256 * 8 * 1,
    }
    # Each of the 5x7 input positions scatters a 3x3 kernel to each of the 4 output channels.
    assert layer_macs(nn.Sequential(up), torch.zeros(1, 8, 5, 7)) == {up: 8 * 5 * 7 * 4 * 9}


def test_parameters_per_component():
    params = count_parameters(Toy())
    assert params == {
        "backbone": 8 * 3 * 9 + 8,
        "decoder": 8 * 8 + 8,
        "heads": 8 * 2 + 2 + 8 + 1,
        "other": 0,
        "total": 224 + 72 + 27,
    }


def test_get_flops_tool_on_a_real_config(tmp_path):
    widths, depths = TINY_OPTIONS["model.backbone.model_kwargs"]["widths"], (1, 1, 1, 1, 1)
    options = [
        f"model.backbone.model_kwargs.widths={widths}".replace(" ", ""),
        f"model.backbone.model_kwargs.depths={depths}".replace(" ", ""),
        "model.backbone.model_kwargs.head_dim=8",
        "model.decoder.channels=16",
    ]
    result = load_tool("get_flops").main(
        [str(QUICKSTART), "--shape", "32", "64", "--out", str(tmp_path / "c.json"), "--cfg-options"]
        + options
    )
    assert result["input"] == [1, 3, 32, 64]
    for table in (result["params"], result["macs"]):
        assert table["total"] == sum(v for k, v in table.items() if k != "total")
        assert min(table["backbone"], table["decoder"], table["heads"]) > 0
    assert (tmp_path / "c.json").is_file()
    # Counted on the meta device; the same model on the CPU gives the same figures.
    cfg_options = dict(TINY_OPTIONS)
    cfg_options["model.backbone.pretrained"] = None
    model = init_model(QUICKSTART, None, device="cpu", cfg_options=cfg_options)
    assert count_parameters(model) == result["params"]
    assert count_macs(model, torch.zeros(1, 3, 32, 64), mode="tensor") == result["macs"]


def test_invpt_vit_l_nyud_config_has_the_published_size():
    """InvPT ViT-L on NYUD-v2 at 448×576: 402.1M parameters and 555.6G MACs published.

    The published MACs come from a hook-based counter that misses attention's matrix products;
    FlopCounterMode counts them (about 50G in ViT-L), hence the wider bound on MACs.
    """
    config = ROOT / "configs/invpt/invpt_vit-l16_2xb2-40k_nyud-448x576.py"
    result = load_tool("get_flops").main([str(config)])
    assert result["input"] == [1, 3, 448, 576]
    assert abs(result["params"]["total"] / 402.1e6 - 1) <= 0.05
    assert abs(result["macs"]["total"] / 555.6e9 - 1) <= 0.10
