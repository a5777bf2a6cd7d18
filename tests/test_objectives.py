"""Training objective, KL warm-up, free bits, the IWAE bound and bits per dimension."""
import math

import pytest
import torch

from hvae_lite.model import HVAEOutput
from hvae_lite.objectives import N_PIXELS, bits_per_dim, iwae_log_likelihood, kl_weight, training_loss


def _output(recon, kl) -> HVAEOutput:
    recon, kl = torch.as_tensor(recon, dtype=torch.float32), torch.as_tensor(kl, dtype=torch.float32)
    elbo = -(recon + kl.sum(1))
    return HVAEOutput(elbo=elbo, recon=recon, kl=kl, log_weight=elbo, params=torch.zeros(len(recon), 1, 28, 28),
                      layers=[])


def test_kl_weight_schedule():
    assert kl_weight(0, 0) == kl_weight(10, 0) == 1.0  # no warm-up
    assert [kl_weight(s, 4) for s in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    assert 0 < kl_weight(0, 1000) < 0.01


def test_training_loss_is_the_negative_elbo_by_default():
    out = _output([10.0, 20.0], [[1.0, 2.0], [3.0, 0.0]])
    assert training_loss(out).item() == pytest.approx(-out.elbo.mean().item())
    assert training_loss(out, beta=0.5).item() == pytest.approx(15.0 + 0.5 * 3.0)


def test_free_bits_clamp_each_layer_on_the_batch_mean():
    kl = torch.tensor([[0.1, 2.0, 0.0], [0.3, 4.0, 0.2]], requires_grad=True)
    out = _output([5.0, 5.0], kl)
    out.kl = kl
    loss = training_loss(out, beta=1.0, free_bits=0.5)
    # Batch means per layer 0.2, 3.0, 0.1 -> clamped to 0.5, 3.0, 0.5.
    assert loss.item() == pytest.approx(5.0 + 0.5 + 3.0 + 0.5)
    loss.backward()
    # Layers under the threshold get no push towards zero; the layer above it does.
    assert torch.equal(kl.grad, torch.tensor([[0.0, 0.5, 0.0], [0.0, 0.5, 0.0]]))


def test_top_free_bits_floor_only_the_top_vector():
    kl = torch.tensor([[1.0, 0.1, 2.0], [3.0, 0.3, 4.0]], requires_grad=True)
    out = _output([5.0, 5.0], kl)
    out.kl = kl
    # Batch means 2.0, 0.2, 3.0: the top floor (4) binds on layer 0 only; the others keep free_bits 0.1.
    loss = training_loss(out, beta=1.0, free_bits=0.1, top_free_bits=4.0)
    assert loss.item() == pytest.approx(5.0 + 4.0 + 0.2 + 3.0)
    loss.backward()
    assert torch.equal(kl.grad[:, 0], torch.zeros(2)) and torch.equal(kl.grad[:, 1], torch.full((2,), 0.5))


def test_bits_per_dim():
    assert bits_per_dim(N_PIXELS * math.log(2)) == pytest.approx(1.0)
    assert bits_per_dim(torch.tensor([0.0, 2 * N_PIXELS * math.log(2)])).tolist() == pytest.approx([0.0, 2.0])
    assert bits_per_dim(10 * math.log(2), n_dims=5) == pytest.approx(2.0)


def _mean_elbo(model, x, repeats=20):
    with torch.no_grad():
        return torch.stack([model(x).elbo for _ in range(repeats)]).mean(0)


def test_iwae_bound_is_above_the_elbo_and_grows_with_k(trained_tiny, digits):
    x = digits[:8]
    torch.manual_seed(0)
    elbo = _mean_elbo(trained_tiny, x)
    estimates = {}
    for k in (1, 10, 100):
        torch.manual_seed(k)
        estimates[k] = iwae_log_likelihood(trained_tiny, x, k=k, chunk_size=50)
        assert estimates[k].shape == (8,) and torch.isfinite(estimates[k]).all()
    # IWAE-1 is one ELBO sample; the bound tightens (on average) as k grows.
    assert abs(estimates[1].mean() - elbo.mean()) < 5.0
    assert elbo.mean() < estimates[10].mean() < estimates[100].mean()
    assert (estimates[100] > elbo).float().mean() >= 0.75


@pytest.mark.parametrize("k, chunk_size", [(12, 5), (12, 12), (7, 1)])
def test_chunked_iwae_equals_one_logsumexp_over_the_same_samples(trained_tiny, digits, k, chunk_size):
    x = digits[:3]
    torch.manual_seed(3)
    chunked = iwae_log_likelihood(trained_tiny, x, k=k, chunk_size=chunk_size)
    # The same RNG stream, consumed chunk by chunk, and all k log-weights combined at once.
    torch.manual_seed(3)
    log_w = []
    with torch.no_grad():
        for start in range(0, k, chunk_size):
            n = min(chunk_size, k - start)
            log_w.append(trained_tiny(x.repeat(n, 1, 1, 1)).log_weight.view(n, 3))
    reference = torch.logsumexp(torch.cat(log_w), 0) - math.log(k)
    torch.testing.assert_close(chunked, reference)


def test_iwae_with_a_pixel_mask_and_bad_k(trained_tiny, digits):
    x = digits[:2]
    mask = torch.zeros_like(x)
    torch.manual_seed(0)
    nothing = iwae_log_likelihood(trained_tiny, x, k=5, pixel_mask=mask)
    # No pixel counted: log p() = 0 up to the Monte-Carlo error of the KL terms.
    assert nothing.abs().max() < 5.0
    with pytest.raises(ValueError, match="k .* must be >= 1"):
        iwae_log_likelihood(trained_tiny, x, k=0)


def test_free_bits_anneal_linearly_after_the_start():
    from hvae_lite.objectives import free_bits_at
    assert free_bits_at(5.0, 0.5, start_epoch=10, end_epoch=0) == 0.5          # never annealed
    assert [free_bits_at(e, 0.5, 10, 20) for e in (0, 10, 15, 20, 30)] == [0.5, 0.5, 0.25, 0.0, 0.0]


def test_kl_balance_weights_favour_layers_that_carry_little():
    from hvae_lite.objectives import kl_balance_weights
    kl = torch.tensor([10.0, 1.0, 1.0])
    units = torch.tensor([10.0, 10.0, 1.0])
    w = kl_balance_weights(kl, units)
    assert w.mean().item() == pytest.approx(1.0)
    assert w[1] < w[0] and w[1] < w[2]              # least KL per unit: cheapest to use
    assert not w.requires_grad
