"""popup (the edge-popup top-k mask of |S| at density 0.1) on 2.4 M and 25 M scores: the
backends' popup_mask and popup_pack against torch.sort-based selection (SupSup's GetSubnet),
torch.topk and a torch.kthvalue threshold. The backends must give the reference's mask; the
torch selections the top k (ties at the cut in their own order; kthvalue keeps them all)."""

import pytest
import torch


@pytest.mark.bench("popup")
def test_popup(run, expected, param):
    import bench_cases

    out = run(param)
    ref = expected(param)
    if param.method.variant == "pack":
        assert torch.equal(out.words.cpu(), bench_cases.pack_of(ref))
        return
    assert out.shape == param.case.shape
    if param.method.backend is not None:
        assert torch.equal(out.cpu(), ref)
        return
    scores, k = bench_cases.popup_inputs(param.case)
    kept, dropped = scores[out.cpu() == 1], scores[out.cpu() == 0]
    assert (kept.numel() == k or param.method.name == "torch_kthvalue") and kept.numel() >= k
    assert dropped.numel() == 0 or kept.min() >= dropped.max()
