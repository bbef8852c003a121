"""popup (the edge-popup top-k mask of |S| at density 0.1) on 2.4 M and 25 M scores: the
backends' popup_mask and popup_pack against torch.sort-based selection (SupSup's GetSubnet),
torch.topk and a torch.kthvalue threshold. The backends must give the reference's mask; the
torch selections the top k (ties at the cut in their own order; kthvalue keeps them all)."""

import bench_cases
import pytest


@pytest.mark.bench("popup")
def test_popup(run, expected, param):
    bench_cases.check(param, run(param), expected(param))
