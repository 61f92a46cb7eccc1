import numpy as np
import pytest
import torch
from ignite.engine import Engine, Events
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from emgan_monai.engines.utils import scalars
from emgan_monai.handlers.image_grid import TensorBoardImageGrid, image_tiles, make_grid
from emgan_monai.handlers.progress import ProgressBar


def _read(log_dir) -> EventAccumulator:
    acc = EventAccumulator(str(log_dir), size_guidance={"images": 0})
    acc.Reload()
    return acc


def test_image_grid_2d_dict(tmp_path):
    out = {
        "input": torch.rand(3, 1, 16, 16),
        "fake": torch.rand(3, 1, 16, 16),
        "mask": torch.rand(3, 3, 16, 16),
        "g_loss": 1.0,
    }
    engine = Engine(lambda e, b: out)
    TensorBoardImageGrid(log_dir=str(tmp_path), tag="img", max_images=2).attach(engine)
    engine.run([0, 1], max_epochs=2)
    acc = _read(tmp_path)
    tags = set(acc.Tags()["images"])
    assert {"img/input", "img/fake", "img/mask"} == tags
    events = acc.Images("img/input")
    assert [e.step for e in events] == [1, 2]
    # 2 rows of 16 px + 3 * 2 px padding; one column (grey)
    assert (events[0].height, events[0].width) == (2 * 16 + 3 * 2, 16 + 2 * 2)


def test_image_grid_3d_tuple_iteration_level(tmp_path):
    vol = torch.rand(2, 1, 8, 8, 5)
    out = {"input": vol, "fake": vol * 2, "real": torch.rand(2, 2, 8, 8, 5)}
    engine = Engine(lambda e, b: out)
    handler = TensorBoardImageGrid(
        log_dir=str(tmp_path),
        tag="triplet",
        epoch_level=False,
        interval=2,
        output_transform=lambda o: (o["input"], o["fake"], o["real"]),
    )
    handler.attach(engine)
    engine.run([0, 1, 2, 3], max_epochs=1)
    acc = _read(tmp_path)
    assert acc.Tags()["images"] == ["triplet"]
    events = acc.Images("triplet")
    assert [e.step for e in events] == [2, 4]
    # columns: input (1) + fake (1) + real (2 channels shown separately) = 4 tiles of 8 px
    assert (events[0].height, events[0].width) == (2 * 8 + 3 * 2, 4 * 8 + 5 * 2)


def test_image_tiles_scaling_and_middle_slice():
    vol = torch.zeros(1, 1, 4, 4, 3)
    vol[..., 1] = torch.arange(16, dtype=torch.float32).view(4, 4)  # middle slice along the last axis
    (tiles,) = image_tiles(vol)
    assert len(tiles) == 1 and tiles[0].shape == (3, 4, 4)
    assert tiles[0].min() == 0.0 and tiles[0].max() == 1.0
    np.testing.assert_allclose(tiles[0][0], np.arange(16).reshape(4, 4) / 15.0, rtol=1e-6)
    rgb = image_tiles(torch.rand(2, 3, 4, 4), max_images=1)
    assert len(rgb) == 1 and len(rgb[0]) == 1  # C == 3 -> one RGB tile
    assert make_grid([[tiles[0]]], padding=1).shape == (3, 6, 6)
    with pytest.raises(ValueError, match="expected images"):
        image_tiles(torch.rand(4, 4))


def test_progress_bar_attaches_with_one_argument(capsys):
    out = {"g_loss": 1.5, "d_loss": 0.5, "fake": torch.zeros(1, 1, 2, 2)}
    engine = Engine(lambda e, b: out)
    bar = ProgressBar(output_transform=scalars, desc="train")
    bar.attach(engine)
    assert engine.has_event_handler(bar.pbar._close, Events.EPOCH_COMPLETED)
    engine.run([0, 1, 2], max_epochs=1)
    err = capsys.readouterr().err
    assert "g_loss" in err and "train" in err


def test_image_grid_on_paired_trainer(tmp_path):
    from torch import nn
    from torch.utils.data import DataLoader

    from emgan_monai.engines.paired import PairedGANTrainer

    torch.manual_seed(0)
    g, d = nn.Conv2d(1, 1, 3, padding=1), nn.Conv2d(2, 1, 4, stride=2, padding=1)
    data = [{"image": torch.rand(1, 16, 16), "label": torch.rand(1, 16, 16)} for _ in range(2)]
    grid = TensorBoardImageGrid(log_dir=str(tmp_path))  # default: every image tensor of the output
    trainer = PairedGANTrainer(
        "cpu",
        1,
        DataLoader(data, batch_size=2),
        g,
        torch.optim.Adam(g.parameters()),
        d,
        torch.optim.Adam(d.parameters()),
        train_handlers=[grid],
    )
    trainer.run()
    assert set(_read(tmp_path).Tags()["images"]) == {"images/input", "images/fake", "images/real"}


def test_attribute_schedule_sets_the_value_of_each_epoch_also_after_a_resume():
    from types import SimpleNamespace

    from ignite.engine import Engine, Events

    from emgan_monai.handlers import AttributeSchedule

    obj = SimpleNamespace(weight=-1.0)
    schedule = AttributeSchedule(obj, "weight", {"0": 0.0, "2": 5.0, 4: 7.0})
    assert [schedule.value_at(k) for k in range(6)] == [0.0, 0.0, 5.0, 5.0, 7.0, 7.0]
    seen = []
    engine = Engine(lambda e, b: seen.append((e.state.epoch, obj.weight)))
    schedule.attach(engine)
    engine.run([0], max_epochs=5)
    assert seen == [(1, 0.0), (2, 0.0), (3, 5.0), (4, 5.0), (5, 7.0)]
    # a resumed run (state restored to 3 completed epochs) gets the value of the epoch it continues with
    obj.weight = -1.0
    resumed = Engine(lambda e, b: seen.append((e.state.epoch, obj.weight)))
    schedule.attach(resumed)
    resumed.add_event_handler(Events.STARTED, lambda e: setattr(e.state, "epoch", 3))
    seen.clear()
    resumed.run([0], max_epochs=5)
    assert seen == [(4, 5.0), (5, 7.0)]
    with pytest.raises(ValueError, match="epoch 0"):
        AttributeSchedule(obj, "weight", {"1": 1.0})
    with pytest.raises(AttributeError, match="no attribute"):
        AttributeSchedule(obj, "missing", {"0": 1.0})
