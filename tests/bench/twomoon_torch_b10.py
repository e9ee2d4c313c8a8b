#!/usr/bin/python3
"""The TwoMoon MM student at hidden noise beta=10 in PyTorch, one seed after another.

    /usr/bin/python3 tests/bench/twomoon_torch_b10.py FIRST END

The protocol of twomoon_torch.py (its functions): the reference teacher
(torch seed 39), its hard pseudo-labels, the double-softmax loss; per seed in
[FIRST, END), torch.manual_seed(seed), MLP(2, 16) with hidden noise 10, 2000
epochs. Prints "teacher <test accuracy>", then "<seed> <MM test accuracy>"
per line (docs/results.md compares these with mke's over the same row).
"""
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import twomoon_torch as T  # noqa: E402

torch.set_num_threads(1)
d = os.path.join(T.repo_root(), "deploy", "data", "twomoon")
lab_xy, lab_y = T.load_csv(os.path.join(d, "labeled.csv"))
unl_xy, _ = T.load_csv(os.path.join(d, "unlabeled.csv"))
tst_xy, tst_y = T.load_csv(os.path.join(d, "test.csv"))
loss_fn = T.make_loss("double_softmax")
torch.manual_seed(39)
teacher = T.MLP(1, T.H_UM)
T.train(teacher, lab_xy[:, :1], lab_y, T.TEACHER_EPOCHS, loss_fn)
pseudo = T.predict(teacher, unl_xy[:, :1])
print("teacher", T.accuracy(T.predict(teacher, tst_xy[:, :1]), tst_y), flush=True)
for seed in range(int(sys.argv[1]), int(sys.argv[2])):
    torch.manual_seed(seed)
    m = T.MLP(2, T.H_MM, "hidden_noise", 10.0)
    T.train(m, unl_xy, pseudo, T.STUDENT_EPOCHS, loss_fn)
    print(seed, T.accuracy(T.predict(m, tst_xy), tst_y), flush=True)
