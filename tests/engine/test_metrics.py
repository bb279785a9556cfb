import pytest
import torch

from svf.engine.tasks.metrics import FewShotScore, binary_confusion


def _t(rows):
    return torch.tensor(rows, dtype=torch.long)


def test_perfect_prediction_scores_100():
    target = _t([[[0, 1], [1, 255]]])
    score = FewShotScore(classes=[1, 2])
    score.update(target.clone().clamp(max=1), target, [1])
    s = score.summary()
    assert s["class_iou"]["1"] == pytest.approx(100.0)
    assert s["fb_iou"] == pytest.approx(100.0)
    # class 2 never had an episode: the authors' rule counts it as 0 in the mean
    assert s["miou"] == pytest.approx(50.0)
    assert s["classes_without_pixels"] == [2]


def test_skip_rule_leaves_out_absent_class():
    target = _t([[[1, 1], [0, 0]]])
    score = FewShotScore(classes=[1, 2], absent_class="skip")
    score.update(target, target, [1])
    assert score.miou() == pytest.approx(1.0)


def test_empty_prediction():
    target = _t([[[1, 1], [0, 0]]])
    pred = torch.zeros_like(target)
    score = FewShotScore(classes=[3])
    score.update(pred, target, [3])
    assert score.class_iou()[3] == 0.0
    # background: inter 2, union 4 -> 0.5; foreground 0 -> FB-IoU 0.25
    assert score.fb_iou() == pytest.approx(0.25)


def test_all_ignore_contributes_nothing():
    target = torch.full((1, 3, 3), 255)
    score = FewShotScore(classes=[1])
    score.update(torch.ones(1, 3, 3, dtype=torch.long), target, [1])
    assert score.class_iou()[1] is None
    assert score.fb_inter == [0.0, 0.0] and score.fb_union == [0.0, 0.0]


def test_class_never_predicted_but_present():
    target = _t([[[1, 0], [0, 0]], [[1, 1], [0, 0]]])
    pred = _t([[[0, 0], [0, 0]], [[1, 1], [1, 0]]])
    score = FewShotScore(classes=[5, 6])
    score.update(pred, target, [5, 6])
    iou = score.class_iou()
    assert iou[5] == 0.0
    assert iou[6] == pytest.approx(2 / 3)
    assert score.miou() == pytest.approx(1 / 3)


def test_accumulates_over_episodes_not_mean_of_episodes():
    # IoU over the sum of intersections/unions differs from the mean of per-episode IoUs
    t1, p1 = _t([[[1, 1, 1, 1]]]), _t([[[1, 1, 1, 1]]])     # 4/4
    t2, p2 = _t([[[1, 0, 0, 0]]]), _t([[[0, 1, 0, 0]]])     # 0/2
    score = FewShotScore(classes=[1])
    score.update(p1, t1, [1])
    score.update(p2, t2, [1])
    assert score.class_iou()[1] == pytest.approx(4 / 6)


def test_binary_confusion_shape_and_values():
    conf = binary_confusion(_t([[[1, 0]]]), _t([[[1, 1]]]))
    assert conf.shape == (1, 2, 2)
    assert conf[0, 0].tolist() == [0.0, 1.0]  # inter bg, fg
    assert conf[0, 1].tolist() == [1.0, 2.0]  # union bg, fg


def test_unknown_class_rejected():
    score = FewShotScore(classes=[1])
    with pytest.raises(ValueError, match="not one of the fold's classes"):
        score.update(_t([[[1]]]), _t([[[1]]]), [7])
