import numpy as np
import pytest
from scipy.stats import spearmanr

from orchestrator.latency.monotonicity import plot_heatmap, srcc_matrix


def test_matrix_matches_scipy_on_shared_archs(shipped):
    m = srcc_matrix(shipped)
    assert np.allclose(m.srcc, m.srcc.T) and np.allclose(np.diag(m.srcc), 1)
    i, j = m.devices.index("edgetpu"), m.devices.index("raspi4")
    a, b = shipped.column("edgetpu"), shipped.column("raspi4")
    ok = ~np.isnan(a)
    assert m.srcc[i, j] == pytest.approx(spearmanr(a[ok], b[ok])[0])
    assert m.shared[i, j] == 1740
    assert np.min(m.srcc) > 0.49 and np.max(m.srcc[~np.eye(6, dtype=bool)]) < 0.93


def test_proxy_choice(shipped):
    m = srcc_matrix(shipped)
    dev, val = m.proxy("mean")
    means = {d: np.mean([m.srcc[k, j] for j in range(6) if j != k]) for k, d in enumerate(m.devices)}
    assert dev == max(means, key=means.get) and val == pytest.approx(means[dev])
    assert m.proxy("min")[0] in m.devices
    with pytest.raises(ValueError, match="criterion"):
        m.proxy("max")


def test_heatmap_png(shipped, tmp_path):
    p = plot_heatmap(srcc_matrix(shipped), tmp_path / "h" / "heat.png")
    assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 5000
