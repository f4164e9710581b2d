"""Makes the YOLOv8n fixture: a real Ultralytics export and Ultralytics' own answers on it.

A YOLOv8n is built from Ultralytics' `yolov8n.yaml` for the 10 classes of `detect-digits`, with
random weights (a fixed seed; nothing is downloaded), and exported to ONNX at 96x96, the size of
the sample set's images. The last convolutions of its head are redrawn at a larger scale (see
`spread_head`), so that random weights give distinct scores and boxes, not Ultralytics' initial
ones, all alike: NMS then has real work to do. It writes, beside this script:

- `yolov8n-digits.onnx`: the export (`[1, 14, 189]`: cx, cy, w, h, then 10 class scores);
- `digits.png` (96x96, a test image of detect-digits) and `wide.png` (the same, resized to
  150x120, so the letterbox pads and scales);
- `boxes-scores-labels.onnx`: a small random detector exported by torch with the other layout
  (boxes `[N, 4]` as corners, scores `[N]`, labels `[N]` int64), with its own answers in
  `reference.json` (torchvision's `batched_nms` on its outputs, boxes mapped back as above);
- `unknown-op.onnx`: a graph of one operator no runtime knows, for the refusal it must meet;
- `reference.json`: per image, the raw output onnxruntime gives on Ultralytics' own letterboxed
  input (in `<image>.output.f32`, little-endian), and the boxes Ultralytics' own
  `non_max_suppression` and `scale_boxes` make of it at conf 0.25, IoU 0.7, max_det 300.

The tests hold cvops' decoding, NMS and mapping back to these boxes, and the endpoint's answer
on `digits.png` (where the letterbox is the identity, so both sides see the same pixels) too.

Ultralytics stamps the export's date into its metadata, so the ONNX file's bytes differ from run
to run; the network, its outputs and the answers here do not.

Run from the repository root, with ultralytics, onnx, onnxslim and onnxruntime from PyPI:
    python3 samplesets/yolov8n/make.py
"""

import json
import math
import os
import shutil
import tempfile

import numpy as np
import onnxruntime
import torch
from PIL import Image
from ultralytics import YOLO
from ultralytics.data.augment import LetterBox
from ultralytics.nn.tasks import DetectionModel
from ultralytics.utils import ops
from ultralytics.utils.nms import non_max_suppression

HERE = os.path.dirname(os.path.abspath(__file__))
SIZE = 96
CONF, IOU, MAX_DET = 0.25, 0.7, 300
SOURCE = "samplesets/detect-digits/images/test/test_0000.jpg"


def spread_head(net, image):
    """Random weights leave the head's last convolutions with outputs of about 1e-7: every score
    0.5, every box the same. Redraw those weights (random normal, seeded) so that on `image`
    the class logits have a standard deviation of 2 and the box logits 1.5, as a trained model's
    spread, and NMS has distinct scores and boxes to work on."""
    head = net.model[-1]
    seen = {}
    hooks = [
        conv.register_forward_hook(lambda m, i, o, key=key: seen.__setitem__(key, i[0].pow(2).mean().sqrt().item()))
        for key, conv in [(("box", j), head.cv2[j][-1]) for j in range(len(head.cv2))]
        + [(("cls", j), head.cv3[j][-1]) for j in range(len(head.cv3))]
    ]
    net.eval()
    with torch.no_grad():
        net(torch.from_numpy(image))
        for h in hooks:
            h.remove()
        for kind, branches, target in [("box", head.cv2, 1.5), ("cls", head.cv3, 2.0)]:
            for j, branch in enumerate(branches):
                conv = branch[-1]
                fan_in = conv.weight.shape[1] * conv.weight.shape[2] * conv.weight.shape[3]
                conv.weight.normal_(0.0, target / (seen[(kind, j)] * math.sqrt(fan_in)))
                conv.bias.zero_()


def build(image):
    torch.manual_seed(0)
    net = DetectionModel("yolov8n.yaml", nc=10, verbose=False)
    spread_head(net, image)
    work = tempfile.mkdtemp()
    pt = os.path.join(work, "yolov8n-digits.pt")
    torch.save({"model": net, "train_args": {}}, pt)
    exported = YOLO(pt).export(format="onnx", imgsz=SIZE, opset=17, simplify=True, dynamic=False)
    shutil.copy(exported, os.path.join(HERE, "yolov8n-digits.onnx"))
    shutil.rmtree(work)


def reference(session, name, image):
    """Ultralytics' preprocessing, onnxruntime's raw output, Ultralytics' postprocessing."""
    bgr = np.ascontiguousarray(np.asarray(image.convert("RGB"))[..., ::-1])
    letterboxed = LetterBox((SIZE, SIZE), auto=False, stride=32)(image=bgr)
    tensor = letterboxed[..., ::-1].transpose(2, 0, 1)[None].astype(np.float32) / 255.0
    raw = session.run(None, {session.get_inputs()[0].name: np.ascontiguousarray(tensor)})[0]
    raw.astype("<f4").tofile(os.path.join(HERE, f"{name}.output.f32"))
    kept = non_max_suppression(torch.from_numpy(raw), CONF, IOU, max_det=MAX_DET)[0]
    kept[:, :4] = ops.scale_boxes((SIZE, SIZE), kept[:, :4], bgr.shape[:2])
    boxes = [[float(v) for v in row[:4]] + [float(row[4]), int(row[5])] for row in kept]
    return {"image": f"{name}.png", "width": image.width, "height": image.height, "output_shape": list(raw.shape), "boxes": boxes}


class BoxesScoresLabels(torch.nn.Module):
    """A small random detector with the other layout cvops reads: boxes [N, 4] as corners in
    input pixels, scores [N] and labels [N] (int64), as torchvision's detectors and NMS-free
    graphs give them. Three convolutions to a 24x24 grid, a box and 10 class scores per cell."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(1)
        self.body = torch.nn.Sequential(
            torch.nn.Conv2d(3, 8, 3, 2, 1), torch.nn.ReLU(), torch.nn.Conv2d(8, 16, 3, 2, 1), torch.nn.ReLU(), torch.nn.Conv2d(16, 14, 1)
        )
        with torch.no_grad():
            self.body[-1].weight.mul_(8.0)
        ys, xs = torch.meshgrid(torch.arange(24.0), torch.arange(24.0), indexing="ij")
        self.register_buffer("grid", torch.stack([xs.flatten(), ys.flatten()]))

    def forward(self, x):
        out = self.body(x).flatten(2)[0]  # [14, 576]
        centre = (self.grid + out[:2].sigmoid()) * 4.0
        size = out[2:4].sigmoid() * 48.0
        boxes = torch.cat([centre - size / 2, centre + size / 2]).T
        scores, labels = out[4:].sigmoid().max(0)
        return boxes, scores, labels


def export_boxes_scores_labels():
    net = BoxesScoresLabels().eval()
    path = os.path.join(HERE, "boxes-scores-labels.onnx")
    torch.onnx.export(
        net, torch.zeros(1, 3, SIZE, SIZE), path, opset_version=17, input_names=["images"],
        output_names=["boxes", "scores", "labels"], dynamo=False,
    )
    return path


def reference_boxes_scores_labels(session, name, image):
    """torchvision's batched NMS (what torchvision's detectors run) on the graph's outputs, at
    Ultralytics' letterbox and `scale_boxes`."""
    import torchvision

    bgr = np.ascontiguousarray(np.asarray(image.convert("RGB"))[..., ::-1])
    letterboxed = LetterBox((SIZE, SIZE), auto=False, stride=32)(image=bgr)
    tensor = letterboxed[..., ::-1].transpose(2, 0, 1)[None].astype(np.float32) / 255.0
    boxes, scores, labels = (torch.from_numpy(o) for o in session.run(None, {session.get_inputs()[0].name: np.ascontiguousarray(tensor)}))
    keep = scores >= CONF
    boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
    kept = torchvision.ops.batched_nms(boxes, scores, labels, IOU)[:MAX_DET]
    mapped = ops.scale_boxes((SIZE, SIZE), boxes[kept].clone(), bgr.shape[:2])
    rows = [[float(v) for v in b] + [float(s), int(l)] for b, s, l in zip(mapped, scores[kept], labels[kept])]
    return {"image": f"{name}.png", "width": image.width, "height": image.height, "boxes": rows}


def export_unknown_op():
    """A graph whose one node is an operator no runtime knows: what an import must refuse."""
    import onnx
    from onnx import TensorProto, helper

    node = helper.make_node("NotAnOperator", ["images"], ["output0"], domain="cvops.test")
    graph = helper.make_graph(
        [node], "unknown", [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, SIZE, SIZE])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, [1, 14, 189])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("cvops.test", 1)])
    onnx.save(model, os.path.join(HERE, "unknown-op.onnx"))


def main():
    digits = Image.open(SOURCE).convert("RGB")
    assert digits.size == (SIZE, SIZE)
    build(np.asarray(digits).transpose(2, 0, 1)[None].astype(np.float32) / 255.0)
    digits.save(os.path.join(HERE, "digits.png"))
    wide = digits.resize((150, 120), Image.BILINEAR)
    wide.save(os.path.join(HERE, "wide.png"))
    session = onnxruntime.InferenceSession(os.path.join(HERE, "yolov8n-digits.onnx"), providers=["CPUExecutionProvider"])
    cases = [reference(session, "digits", digits), reference(session, "wide", wide)]
    for case in cases:
        assert case["boxes"], f"{case['image']}: no boxes above {CONF}; the fixture would test nothing"
        # The pipeline above is Ultralytics' own: its predictor gives the same boxes.
        result = YOLO(os.path.join(HERE, "yolov8n-digits.onnx"), task="detect").predict(
            os.path.join(HERE, case["image"]), imgsz=SIZE, conf=CONF, iou=IOU, max_det=MAX_DET, verbose=False
        )[0]
        theirs = np.concatenate([result.boxes.xyxy.numpy(), result.boxes.conf.numpy()[:, None]], axis=1)
        ours = np.array([b[:5] for b in case["boxes"]])
        assert theirs.shape == ours.shape and np.abs(theirs - ours).max() < 1e-3, (case["image"], np.abs(theirs - ours).max())
    export_unknown_op()
    bsl = onnxruntime.InferenceSession(export_boxes_scores_labels(), providers=["CPUExecutionProvider"])
    # The image the letterbox leaves as it is: both sides see the same pixels.
    bsl_cases = [reference_boxes_scores_labels(bsl, "digits", digits)]
    for case in bsl_cases:
        assert len(case["boxes"]) > 10, f"{case['image']}: {len(case['boxes'])} boxes; the fixture would test little"
    meta = {
        "model": "yolov8n-digits.onnx",
        "input": [3, SIZE, SIZE],
        "classes": 10,
        "conf": CONF,
        "iou": IOU,
        "max_det": MAX_DET,
        "ultralytics": __import__("ultralytics").__version__,
        "torch": torch.__version__,
        "onnxruntime": onnxruntime.__version__,
        "cases": cases,
        "boxes_scores_labels": {"model": "boxes-scores-labels.onnx", "cases": bsl_cases},
    }
    with open(os.path.join(HERE, "reference.json"), "w") as f:
        json.dump(meta, f, indent=1)
    print({c["image"]: len(c["boxes"]) for c in cases}, {c["image"]: len(c["boxes"]) for c in bsl_cases})


if __name__ == "__main__":
    main()
