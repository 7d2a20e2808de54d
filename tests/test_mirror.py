"""Mirror (black-box): the genetic-algorithm rules on hand-checked cases (p-space bounds and clip,
roulette selection, crossover, mutation), and the search on a tiny target and prior — the elite is
kept, the early stop, exact query counting by phase, only `probs()` used, group independence."""

from __future__ import annotations

import math

import pytest
import torch

from mibench.attacks.access import BlackBox
from mibench.attacks.base import AttackContext
from mibench.attacks.mirror import (
    LOG_TINY,
    MirrorAttack,
    PSpaceBounds,
    _ClassSearch,
    crossover,
    mutate,
    select_parents,
    sort_population,
    to_p_space,
    to_w_space,
)
from mibench.classifiers.architectures import build_classifier
from mibench.errors import AttackError
from mibench.registry import GENERATORS

RES, K = 16, 4


# --- primitives --------------------------------------------------------------------------------

def test_p_space_inverts_the_last_leaky_relu_and_bounds_are_mean_plus_minus_one_std():
    w = torch.tensor([[-1.0, 2.0], [1.0, 0.0]])
    assert torch.equal(to_p_space(w), torch.tensor([[-5.0, 2.0], [1.0, 0.0]]))
    assert torch.allclose(to_w_space(to_p_space(w)), w)
    b = PSpaceBounds.from_ws(w, 1.0)
    # p = [[-5, 2], [1, 0]]: mean (-2, 1), population std (3, 1) → p in [(-5, 0), (1, 2)]
    assert torch.allclose(b.p_std, torch.tensor([3.0, 1.0]))
    assert torch.allclose(b.w_min, torch.tensor([-1.0, 0.0]))  # LeakyReLU_0.2(-5) = -1
    assert torch.allclose(b.w_max, torch.tensor([1.0, 2.0]))
    assert torch.equal(b.clip(torch.tensor([[-3.0, 5.0], [0.5, -0.1]])), torch.tensor([[-1.0, 2.0], [0.5, 0.0]]))
    half = PSpaceBounds.from_ws(w, 0.5)
    assert torch.allclose(half.w_min, torch.tensor([-0.7, 0.5]))  # p: -2 - 1.5 = -3.5 → -0.7


def test_roulette_selection_bisects_cumulative_softmax_weights():
    fitness = torch.log(torch.tensor([0.5, 0.25, 0.25]))  # softmax(log p) = p
    idx1, idx2 = select_parents(fitness, torch.tensor([0.1, 0.6, 0.8, 0.51]))
    assert idx1.tolist() == [0, 1] and idx2.tolist() == [2, 1]
    idx1, _ = select_parents(torch.tensor([0.0, -1e9]), torch.tensor([0.999999, 0.0]))
    assert idx1.tolist() == [0]  # a vanishing weight is (practically) never drawn


def test_crossover_takes_parent_one_with_probability_f1_over_f1_plus_f2():
    pop = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    fit = torch.tensor([-1.0, -3.0])  # log-probabilities: parent 0 is the fitter
    i1, i2 = torch.tensor([0]), torch.tensor([1])
    # official: q = -1 / -4 = 0.25 — the *less* fit parent 2 gets 75 % of the coordinates
    assert crossover(pop, fit, i1, i2, torch.tensor([[0.1, 0.5]])).tolist() == [[1.0, 4.0]]
    assert crossover(pop, fit, i1, i2, torch.tensor([[0.8, 0.2]])).tolist() == [[3.0, 2.0]]
    # fitter: q = -3 / -4 = 0.75
    assert crossover(pop, fit, i1, i2, torch.tensor([[0.1, 0.5]]), "fitter").tolist() == [[1.0, 2.0]]
    assert crossover(pop, fit, i1, i2, torch.tensor([[0.8, 0.7]]), "fitter").tolist() == [[3.0, 2.0]]
    # both parents certain (log p = 0): 0/0 → parent 2, as the published comparison with NaN
    assert crossover(pop, torch.zeros(2), i1, i2, torch.tensor([[0.0, 0.0]])).tolist() == [[3.0, 4.0]]


def test_mutation_adds_masked_uniform_noise_in_p_space_then_clips():
    wide = PSpaceBounds(p_std=torch.tensor([2.0, 4.0]), w_min=torch.full((2,), -100.0), w_max=torch.full((2,), 100.0))
    children = torch.tensor([[1.0, -1.0], [-1.0, 1.0]])
    mask_u = torch.tensor([[0.05, 0.5], [0.05, 0.05]])  # prob 0.1: child 0 coordinate 0, child 1 both
    noise_u = torch.tensor([[0.75, 0.5]])  # shared: 0.1·(2·0.75 − 1)·σ = 0.05σ → (0.1, 0)
    out = mutate(children, mask_u, noise_u, wide, 0.1, 0.1)
    # child 0: p = (1, -5) + (0.1, 0) → w = (1.1, -1); child 1: p = (-5, 1) + (0.1, 0) → (-0.98, 1)
    assert torch.allclose(out, torch.tensor([[1.1, -1.0], [-0.98, 1.0]]))
    per_child = mutate(children, mask_u, torch.tensor([[0.75, 0.5], [0.25, 1.0]]), wide, 0.1, 0.1)
    # child 1: p = (-5 - 0.1, 1 + 0.4) → w = (-1.02, 1.4)
    assert torch.allclose(per_child[1], torch.tensor([-1.02, 1.4]))
    tight = PSpaceBounds(p_std=wide.p_std, w_min=torch.tensor([-1.01, -10.0]), w_max=torch.tensor([1.05, 10.0]))
    assert torch.allclose(mutate(children, mask_u, torch.tensor([[0.25, 0.5]]), tight, 0.1, 0.1),
                          torch.tensor([[0.9, -1.0], [-1.01, 1.0]]))
    assert torch.allclose(mutate(children, torch.ones(2, 2), noise_u, wide, 0.1, 0.1), children)  # no mask


def test_sort_and_stop_rule():
    pop, fit = sort_population(torch.arange(6.0).view(3, 2), torch.tensor([-2.0, -0.5, -2.0]))
    assert fit.tolist() == [-0.5, -2.0, -2.0] and pop[:, 0].tolist() == [2.0, 0.0, 4.0]  # stable on ties
    attack = MirrorAttack.from_preset("smoke", {"min_score": 0.9, "generations": 3})
    s = _ClassSearch(0, pop, torch.tensor([math.log(0.91), -1.0, -2.0]))
    attack._check_stop(s)
    assert s.done
    s = _ClassSearch(0, pop, torch.tensor([math.log(0.89), -1.0, -2.0]))
    attack._check_stop(s)
    assert not s.done
    s.generations = 3
    attack._check_stop(s)
    assert s.done


def test_config_rejects_padding_queries():
    with pytest.raises(AttackError, match="query_batch_size"):
        MirrorAttack.from_preset("smoke", {"query_batch_size": 4})  # population 6
    with pytest.raises(AttackError, match="pool_size"):
        MirrorAttack.from_preset("smoke", {"pool_size": 3})


# --- the search on a tiny target and prior ----------------------------------------------------

class Spy:
    """Forwards to an access object; records member names used and each probs() batch size."""

    def __init__(self, access):
        object.__setattr__(self, "_access", access)
        object.__setattr__(self, "used", set())
        object.__setattr__(self, "calls", [])

    def __getattr__(self, name):
        self.used.add(name)
        attr = getattr(self._access, name)
        if name == "probs":
            def probs(x):
                self.calls.append((self._access._phase, x.shape[0]))
                return attr(x)
            return probs
        return attr


def _ctx(spy: bool = True, store_dir=None) -> AttackContext:
    target = build_classifier("compact_resnet", K, RES, {"width": 8, "depths": [1, 1]}, seed=0).eval()
    kind = GENERATORS.get("stylegan2")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        prior = kind.build(kind.smoke_params, RES).eval().requires_grad_(False)
    access = BlackBox(target, K, RES, "cpu")
    return AttackContext(access=Spy(access) if spy else access, prior=prior, device=torch.device("cpu"), seed=0,
                         output_size=RES, progress=False, store_dir=store_dir)


def _run(classes, **overrides):
    ctx = _ctx()
    attack = MirrorAttack.from_preset("smoke", {"generations": 4, **overrides})
    attack.prepare(ctx)
    return attack, ctx, attack.attack_classes(ctx, classes)


def test_queries_are_counted_exactly_by_phase_and_only_probs_is_used():
    attack, ctx, results = _run([0, 1, 2])
    cfg = attack.config
    assert ctx.access.used <= {"probs", "set_phase", "input_size", "num_classes"}
    gens = [r.info["generations"] for r in results]
    assert all(r.info["queries"] == g * cfg.population_size for r, g in zip(results, gens))
    assert ctx.access.queries_by_phase == {"init": cfg.pool_size, "attack": sum(gens) * cfg.population_size}
    attack_calls = [n for phase, n in ctx.access.calls if phase == "attack"]
    assert attack_calls and set(attack_calls) == {cfg.query_batch_size}  # fixed size, never a padding image
    assert sum(n for phase, n in ctx.access.calls if phase == "init") == cfg.pool_size
    for r in results:
        assert r.images.shape == (1, 3, RES, RES) and r.latents.shape == (1, ctx.prior.w_dim)
        assert r.scores.shape == (1,) and 0 < float(r.scores[0]) <= 1
        last = r.info["confidence_by_generation"][-1] if r.info["generations"] else r.info["initial_confidence"]
        assert r.scores[0].item() == pytest.approx(last)


def test_a_resumed_run_reuses_the_scored_pool_and_credits_its_queries(tmp_path):
    first_ctx = _ctx(store_dir=tmp_path)
    first = MirrorAttack.from_preset("smoke", {"generations": 2})
    first.prepare(first_ctx)
    again = _ctx(store_dir=tmp_path)
    second = MirrorAttack.from_preset("smoke", {"generations": 2})
    second.prepare(again)
    assert "probs" not in again.access.used and again.access.queries_by_phase == {"init": first.config.pool_size}
    assert second.phase_info()["resumed"] and not first.phase_info()["resumed"]
    for name in ("_pool_w", "_top_idx", "_top_fit"):
        assert torch.equal(getattr(first, name), getattr(second, name))
    assert [r.images for r in second.attack_classes(again, [1])][0].equal(first.attack_classes(first_ctx, [1])[0].images)
    # Other settings (here a larger pool) are another stage: scored again.
    third_ctx = _ctx(store_dir=tmp_path)
    MirrorAttack.from_preset("smoke", {"pool_size": 30}).prepare(third_ctx)
    assert "probs" in third_ctx.access.used


def test_the_elite_is_kept_and_fitness_never_decreases():
    ctx = _ctx()
    attack = MirrorAttack.from_preset("smoke", {"generations": 5, "pool_batch_size": 6, "min_score": 1.0})
    attack.prepare(ctx)
    seen = []
    inner = attack._fitness

    def recording(c, w, targets):
        fit = inner(c, w, targets)
        seen.append((w.clone(), fit.clone()))
        return fit

    attack._fitness = recording
    start = attack._pool_w[attack._top_idx[1]][0].clone()  # class 1's initial elite
    [res] = attack.attack_classes(ctx, [1])
    assert res.info["generations"] == 5 and not res.info["early_stopped"]
    elite, best = start, attack._top_fit[1, 0].item()
    for w, fit in seen:
        assert torch.equal(w[0], elite), "row 0 of every new population is the previous elite"
        assert fit[0].item() == pytest.approx(best, abs=1e-6)  # the elite re-queried scores the same
        assert fit.max().item() >= best - 1e-6
        elite, best = w[int(torch.argmax(fit))], fit.max().item()
    history = [res.info["initial_confidence"], *res.info["confidence_by_generation"]]
    assert all(b >= a - 1e-6 for a, b in zip(history, history[1:]))
    assert torch.equal(res.latents[0], elite)


def test_early_stop_when_the_elite_is_confident_enough():
    attack, ctx, results = _run([0, 1], min_score=1e-30)  # every initial elite already qualifies
    assert all(r.info["generations"] == 0 and r.info["early_stopped"] and r.info["queries"] == 0 for r in results)
    assert "attack" not in ctx.access.queries_by_phase
    _, _, full = _run([0, 1], min_score=1.0)  # never reached: every generation runs
    assert all(r.info["generations"] == 4 and not r.info["early_stopped"] for r in full)


def test_a_class_result_and_queries_do_not_depend_on_its_group():
    _, _, together = _run([0, 1, 3], generations=3)
    for r in together:
        [alone] = _run([r.class_id], generations=3)[2]
        assert torch.equal(r.images, alone.images) and torch.equal(r.latents, alone.latents)
        assert r.info == alone.info


def test_log_prob_floor_is_finite():
    assert math.isfinite(LOG_TINY) and LOG_TINY < -80
