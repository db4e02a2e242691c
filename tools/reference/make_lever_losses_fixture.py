"""PyTorch reference for the issue-16 training levers (tests/fixtures/levers).

- Response KL with Ultravox's semantics (ultravox_model.py, `_compute_kl_loss`):
  F.kl_div(log_softmax(student / tau), log_softmax(teacher / tau),
  reduction="batchmean", log_target=True) over the selected reply rows, no tau**2.
- Per-token alignment target: cross_entropy(-||v_i - E_w||^2 / (2 tau), t_i)
  over the last T virtual tokens (computed here as distances, in diva as
  (v.E - ||E||^2/2) / tau, which differs by a per-row constant).
- In-batch contrastive loss (InfoNCE over cosine similarities, arXiv 2412.15712):
  cross_entropy(normalize(student) @ normalize(teacher).T / tau, arange(b)),
  per example (reduction="none"); the teacher is a constant.

Both values and the gradients with respect to the student side are stored (f64).

    python make_lever_losses_fixture.py --out tests/fixtures/levers
"""
import argparse
import os

import numpy as np
import torch
import torch.nn.functional as F

from st_util import save_file


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    g = torch.Generator().manual_seed(16)
    out = {}

    # Response KL: 7 reply rows (two examples, 4 + 3 positions), vocabulary 13.
    tau = 2.0
    s = (torch.randn(7, 13, generator=g, dtype=torch.float64) * 3).requires_grad_()
    t = torch.randn(7, 13, generator=g, dtype=torch.float64) * 3
    kl = F.kl_div(
        F.log_softmax(s / tau, dim=-1),
        F.log_softmax(t / tau, dim=-1),
        reduction="batchmean",
        log_target=True,
    )
    kl.backward()
    out.update(
        kl_student_logits=s.detach().numpy(),
        kl_teacher_logits=t.numpy(),
        kl_tau=np.array([tau]),
        kl_loss=np.array([kl.item()]),
        kl_grad_student=s.grad.numpy(),
    )

    # Contrastive: batch 5, width 6, tau 0.1.
    ctau = 0.1
    hs = torch.randn(5, 6, generator=g, dtype=torch.float64).requires_grad_()
    ht = torch.randn(5, 6, generator=g, dtype=torch.float64)
    sim = F.normalize(hs, dim=-1) @ F.normalize(ht, dim=-1).T / ctau
    c = F.cross_entropy(sim, torch.arange(5), reduction="none")
    c.sum().backward()
    out.update(
        con_student=hs.detach().numpy(),
        con_teacher=ht.numpy(),
        con_tau=np.array([ctau]),
        con_loss=c.detach().numpy(),
        con_grad_student_of_sum=hs.grad.numpy(),
    )
    # Per-token alignment target: the last T=3 of N=7 virtual tokens scored
    # against a vocabulary of 11 embeddings by -||v - E||^2 / (2 tau).
    atau = 0.5
    v = torch.randn(7, 6, generator=g, dtype=torch.float64).requires_grad_()
    E = torch.randn(11, 6, generator=g, dtype=torch.float64)
    ids = torch.tensor([4, 0, 9])
    tail = v[-3:]
    logits = -((tail[:, None, :] - E[None, :, :]) ** 2).sum(-1) / (2 * atau)
    ce = F.cross_entropy(logits, ids)
    ce.backward()
    out.update(
        ace_virtual=v.detach().numpy(),
        ace_table=E.numpy(),
        ace_ids=ids.numpy().astype(np.uint32),
        ace_tau=np.array([atau]),
        ace_loss=np.array([ce.item()]),
        ace_grad_virtual=v.grad.numpy(),
    )
    save_file({k: np.ascontiguousarray(v) for k, v in out.items()},
              os.path.join(a.out, "expected.safetensors"),
              metadata={"torch": torch.__version__, "script": "make_lever_losses_fixture.py"})


if __name__ == "__main__":
    main()
