"""The trainers' settings objects (issue 23): small constructor surfaces, same training as the 0.1 keyword API.

``BEFORE`` holds the per-iteration losses and weight sums that the trainers of commit 5e3174c (29-argument keyword
API) produced on these tiny settings, recorded with ``OMP_NUM_THREADS=1`` on CPU; the trainers built from
:class:`~emgan_monai.engines.AdversarialSettings` / :class:`~emgan_monai.engines.GeneratorLoss` (and the EMA as
the :class:`~emgan_monai.handlers.AveragedModelUpdate` handler) must reproduce them.
"""

from __future__ import annotations

import inspect

import pytest
import torch
from ignite.engine import Events
from torch import nn

import emgan_monai.engines as E
from emgan_monai.engines.fewshot import FewShotGANTrainer, PairedFewShotGANTrainer
from emgan_monai.handlers import AveragedModelUpdate
from emgan_monai.losses import LowPassCycleLoss
from emgan_monai.transforms.diffaugment import DiffAugment

TRAINERS = [
    E.AdversarialTrainer,
    E.PairedGANTrainer,
    E.UnconditionalGANTrainer,
    E.CycleGANTrainer,
    FewShotGANTrainer,
    PairedFewShotGANTrainer,
]

BEFORE = {
    "unconditional": {
        "losses": [
            {
                "g_adv": -0.1100895703,
                "g_loss": -0.1100895703,
                "d_real": -0.1086492464,
                "d_fake": 0.1093588658,
                "gp": 0.9595355988,
                "d_loss": 9.5960655212,
            },
            {
                "g_adv": -0.1131549254,
                "g_loss": -0.1131549254,
                "d_real": -0.1099383645,
                "d_fake": 0.1123133674,
                "gp": 0.9671586752,
                "d_loss": 9.6739616394,
            },
        ],
        "weights": {"g": 2.36388692, "d": 9.4018729},
    },
    "paired": {
        "losses": [
            {
                "g_adv": 0.7568188906,
                "g_pixel": 0.1875601113,
                "g_loss": 1.4390573502,
                "d_real": 0.8198590279,
                "d_fake": 0.0213429648,
                "d_loss": 0.4206010103,
            },
            {
                "g_adv": 0.7568898201,
                "g_pixel": 0.2002804577,
                "g_loss": 1.6542599201,
                "d_real": 0.8175407648,
                "d_fake": 0.0261731092,
                "d_loss": 0.4218569398,
            },
            {
                "g_adv": 0.7288322449,
                "g_pixel": 0.2018288374,
                "g_loss": 1.7772179842,
                "d_real": 0.7737949491,
                "d_fake": 0.0309020467,
                "d_loss": 0.4023484886,
            },
            {
                "g_adv": 0.7547058463,
                "g_pixel": 0.1812292337,
                "g_loss": 1.6459575891,
                "d_real": 0.8098464012,
                "d_fake": 0.0214156602,
                "d_loss": 0.415631026,
            },
        ],
        "weights": {"g": 8.70306103, "d": 12.95928309},
    },
    "cycle": {
        "losses": [
            {
                "g_adv": 1.8450162411,
                "g_cycle": 0.5310305357,
                "g_cycle_b": 0.3229595125,
                "g_identity": 1.0820252895,
                "g_loss": 5.6970825195,
                "d_real": 2.0511822701,
                "d_fake": 0.0099395495,
                "d_a": 0.5128555894,
                "d_b": 0.5177053809,
                "d_loss": 1.0305609703,
            },
            {
                "g_adv": 1.8291785717,
                "g_cycle": 0.5010103583,
                "g_cycle_b": 0.3874666989,
                "g_identity": 1.0646324158,
                "g_loss": 5.672785759,
                "d_real": 1.9827880859,
                "d_fake": 0.0109198838,
                "d_a": 0.4808661044,
                "d_b": 0.5159878731,
                "d_loss": 0.9968539476,
            },
            {
                "g_adv": 1.8288097382,
                "g_cycle": 0.484570682,
                "g_cycle_b": 0.3216573596,
                "g_identity": 1.0421651602,
                "g_loss": 5.4525723457,
                "d_real": 1.930409193,
                "d_fake": 0.0109434417,
                "d_a": 0.4704447985,
                "d_b": 0.500231564,
                "d_loss": 0.9706763625,
            },
            {
                "g_adv": 1.821624279,
                "g_cycle": 0.543282032,
                "g_cycle_b": 0.3666721582,
                "g_identity": 1.0875680447,
                "g_loss": 5.8156652451,
                "d_real": 2.0320632458,
                "d_fake": 0.0115131792,
                "d_a": 0.5014924407,
                "d_b": 0.5202957988,
                "d_loss": 1.0217882395,
            },
        ],
        "weights": {"g_ab": 11.30310958, "g_ba": 8.54597766, "d_a": 8.94533506, "d_b": 9.54813079},
    },
    "fewshot": {
        "losses": [
            {
                "g_adv": 0.667891264,
                "g_texture": 0.2265788615,
                "g_loss": 0.7811806798,
                "d_loss": 1.4018374681,
                "d_real": 0.6756156087,
                "d_fake": 0.7237740755,
                "logit_real": 0.0372490361,
                "logit_fake": 0.0591585115,
                "r1": 0.0012238687,
            },
            {
                "g_adv": 0.6664779186,
                "g_texture": 0.2209686339,
                "g_loss": 0.7769622207,
                "d_loss": 1.3947138786,
                "d_real": 0.6726773977,
                "d_fake": 0.7220364213,
                "logit_real": 0.0435251743,
                "logit_fake": 0.0562275387,
                "r1": 0.0012238687,
            },
        ],
        "weights": {"g": 1.98356811, "d": 9.45820597, "ema": 1.99138145},
    },
    "paired_fewshot": {
        "losses": [
            {
                "g_adv": -0.1717007905,
                "g_pixel": 0.1586300433,
                "g_texture": 0.1586300433,
                "g_loss": 0.7205486298,
                "d_loss": 2.0442874432,
                "d_real": 0.8577792645,
                "d_fake": 1.1821348667,
                "logit_real": 0.1422207803,
                "logit_fake": 0.1821349263,
                "r1": 0.0029155877,
            },
            {
                "g_adv": -0.1701849997,
                "g_pixel": 0.1797944605,
                "g_texture": 0.1797944605,
                "g_loss": 0.8337811232,
                "d_loss": 1.9633908272,
                "d_real": 0.8170082569,
                "d_fake": 1.1463825703,
                "logit_real": 0.182991758,
                "logit_fake": 0.1463826001,
                "r1": 0.0029155877,
            },
            {
                "g_adv": -0.1713425964,
                "g_pixel": 0.1582965404,
                "g_texture": 0.1582965404,
                "g_loss": 0.7190318704,
                "d_loss": 1.9898953438,
                "d_real": 0.8292605281,
                "d_fake": 1.1606347561,
                "logit_real": 0.1707394272,
                "logit_fake": 0.1606348157,
                "r1": 0.0029155877,
            },
            {
                "g_adv": -0.1666067988,
                "g_pixel": 0.1790837198,
                "g_texture": 0.1790837198,
                "g_loss": 0.8325189352,
                "d_loss": 2.0481617451,
                "d_real": 0.8473764658,
                "d_fake": 1.1964710951,
                "logit_real": 0.1526234895,
                "logit_fake": 0.1964710504,
                "r1": 0.0028761919,
            },
        ],
        "weights": {"g": 10.01001358, "d": 11.80071177, "ema": 10.01185138},
    },
}


@pytest.mark.parametrize("trainer", TRAINERS, ids=lambda c: c.__name__)
def test_no_trainer_takes_more_than_15_parameters(trainer):
    params = inspect.signature(trainer).parameters
    assert len(params) <= 15, list(params)
    for name in ("device", "max_epochs", "train_data_loader", "amp", "seed", "train_handlers"):
        assert name in params  # MONAI's Trainer arguments stay where a MONAI user looks for them


def _nets(cin, cout, seed):
    torch.manual_seed(seed)
    g = nn.Sequential(nn.Conv2d(cin, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, cout, 3, padding=1), nn.Tanh())
    d = nn.Sequential(nn.Conv2d(cout, 4, 3, stride=2, padding=1), nn.LeakyReLU(0.2), nn.Conv2d(4, 1, 3, padding=1))
    return g, d


def _cond_critic():
    return nn.Sequential(nn.Conv2d(2, 4, 3, stride=2, padding=1), nn.LeakyReLU(0.2), nn.Conv2d(4, 1, 3, padding=1))


def _data(keys, seed, n=4):
    gen = torch.Generator().manual_seed(seed)
    items = [{k: torch.rand(1, 8, 8, generator=gen) * 2 - 1 for k in keys} for _ in range(n)]
    return torch.utils.data.DataLoader(items, batch_size=2, shuffle=True, generator=torch.Generator().manual_seed(seed))


def _opt(m):
    return torch.optim.Adam(m.parameters(), lr=1e-3, betas=(0.5, 0.99))


def _trace(trainer, extra=()):
    rec = []
    trainer.add_event_handler(
        Events.ITERATION_COMPLETED,
        lambda e: rec.append(
            {
                k: round(float(v), 10)
                for k, v in e.state.output.items()
                if not isinstance(v, torch.Tensor) or v.ndim == 0
            }
        ),
    )
    trainer.run()
    sums = {
        n: round(float(sum(p.detach().double().abs().sum() for p in m.parameters())), 8)
        for n, m in [*trainer.g_networks.items(), *trainer.d_networks.items(), *extra]
    }
    return {"losses": rec, "weights": sums}


def _build(case):
    tex = LowPassCycleLoss(1.0, 2)
    if case == "unconditional":  # Wasserstein + gradient penalty + clipping, 2 critic steps
        _, d = _nets(2, 1, 0)
        g = nn.Sequential(nn.Conv2d(2, 1, 3, padding=1), nn.Tanh())
        return E.UnconditionalGANTrainer(
            "cpu",
            1,
            _data(["label"], 1),
            g,
            _opt(g),
            d,
            _opt(d),
            latent_shape=(2, 8, 8),
            seed=3,
            epoch_length=2,
            adversarial=E.AdversarialSettings(loss="wasserstein", d_steps=2, gp_weight=10.0, clip_value=0.5),
        ), ()
    if case == "paired":  # least squares, smooth L1, adversarial warm-up
        g, _ = _nets(1, 1, 1)
        d = _cond_critic()
        return E.PairedGANTrainer(
            "cpu",
            2,
            _data(["image", "label"], 2),
            g,
            _opt(g),
            d,
            _opt(d),
            seed=4,
            adversarial=E.AdversarialSettings(loss="least_squares"),
            generator_loss=E.GeneratorLoss(lambda_pixel=7.0, pixel_loss="smooth_l1", lambda_adv=0.5, adv_warmup=3),
        ), ()
    if case == "cycle":  # image pools, weaker low-passed B cycle, identity
        ga, da = _nets(1, 1, 5)
        gb, db = _nets(1, 1, 6)
        ga.spatial_dims = 2
        return E.CycleGANTrainer(
            "cpu",
            2,
            _data(["a", "b"], 3),
            {"g_ab": ga, "g_ba": gb},
            {"d_a": da, "d_b": db},
            torch.optim.Adam([*ga.parameters(), *gb.parameters()], lr=1e-3),
            torch.optim.Adam([*da.parameters(), *db.parameters()], lr=1e-3),
            keys=("a", "b"),
            seed=5,
            adversarial=E.AdversarialSettings(loss="least_squares", pool_size=3),
            generator_loss=E.GeneratorLoss(
                lambda_cycle=4.0, lambda_identity=0.25, lambda_cycle_b=2.0, cycle_b_sigma=1.0
            ),
        ), ()
    if case == "fewshot":  # non-saturating, lazy R1, DiffAugment, texture term, EMA handler
        g = nn.Sequential(nn.Conv2d(2, 1, 3, padding=1), nn.Tanh())
        _, d = _nets(1, 1, 7)
        ema = torch.optim.swa_utils.AveragedModel(g, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(0.9))
        return FewShotGANTrainer(
            "cpu",
            1,
            _data(["label"], 4),
            g,
            _opt(g),
            d,
            _opt(d),
            latent_shape=(2, 8, 8),
            seed=6,
            epoch_length=2,
            adversarial=E.AdversarialSettings(
                loss="nonsaturating", r1_gamma=2.0, r1_interval=2, augment=DiffAugment(seed=11)
            ),
            generator_loss=E.GeneratorLoss(texture_loss=tex, lambda_texture=0.5),
            train_handlers=[AveragedModelUpdate(ema)],
        ), [("ema", ema)]
    g, _ = _nets(1, 1, 8)  # paired few-shot: hinge, lazy R1, DiffAugment, low-pass pixel term, texture, EMA
    d = _cond_critic()
    ema = torch.optim.swa_utils.AveragedModel(g, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(0.9))
    return PairedFewShotGANTrainer(
        "cpu",
        2,
        _data(["image", "label"], 5),
        g,
        _opt(g),
        d,
        _opt(d),
        seed=7,
        adversarial=E.AdversarialSettings(loss="hinge", r1_gamma=1.0, r1_interval=3, augment=DiffAugment()),
        generator_loss=E.GeneratorLoss(
            lambda_pixel=5.0, pixel_loss=tex, lambda_adv=0.7, texture_loss=tex, lambda_texture=0.3
        ),
        train_handlers=[AveragedModelUpdate(ema)],
    ), [("ema", ema)]


@pytest.mark.parametrize("case", list(BEFORE))
def test_settings_objects_train_as_the_keyword_api_did(case):
    trainer, extra = _build(case)
    got = _trace(trainer, extra)
    want = BEFORE[case]
    assert len(got["losses"]) == len(want["losses"])
    for g_it, w_it in zip(got["losses"], want["losses"]):
        assert g_it.keys() == w_it.keys()
        for k in w_it:
            assert g_it[k] == pytest.approx(w_it[k], rel=1e-6, abs=1e-8), k
    for k, v in want["weights"].items():
        assert got["weights"][k] == pytest.approx(v, rel=1e-7), k


def test_settings_refuse_what_a_trainer_does_not_implement():
    g, d = _nets(1, 1, 0)
    loader = _data(["label"], 0)
    with pytest.raises(ValueError, match="r1_gamma"):
        E.UnconditionalGANTrainer(
            "cpu",
            1,
            loader,
            g,
            _opt(g),
            d,
            _opt(d),
            latent_shape=(1, 8, 8),
            adversarial=E.AdversarialSettings(r1_gamma=1.0),
        )
    with pytest.raises(ValueError, match="gp_weight"):
        FewShotGANTrainer(
            "cpu",
            1,
            loader,
            g,
            _opt(g),
            d,
            _opt(d),
            latent_shape=(1, 8, 8),
            adversarial=E.AdversarialSettings(gp_weight=10.0),
        )
    with pytest.raises(ValueError, match="lambda_texture"):
        E.PairedGANTrainer(
            "cpu",
            1,
            loader,
            g,
            _opt(g),
            _cond_critic(),
            _opt(d),
            generator_loss=E.GeneratorLoss(texture_loss=nn.L1Loss(), lambda_texture=1.0),
        )
    with pytest.raises(ValueError, match="needs a texture_loss"):
        E.GeneratorLoss(lambda_texture=1.0)
    with pytest.raises(ValueError, match="d_steps"):
        E.AdversarialSettings(d_steps=0)
    with pytest.raises(ValueError, match=">= 0"):
        E.GeneratorLoss(lambda_pixel=-1.0)
