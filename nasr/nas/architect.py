"""The alpha update of DARTS's bilevel search: descend the validation loss w.r.t. the alphas
(all of `model.arch_parameters()`: with PC-DARTS's partial channels, the edge betas too).

`loss_fn(model, batch) -> scalar tensor` hides what a batch is, so the same Architect drives the
KWS cross-entropy search and the ASR CTC search.

First order: the gradient of L_val(w, alpha) w.r.t. alpha at the current weights.
Second order (DARTS's "unrolled" step): the gradient of L_val(w', alpha) with
w' = w - eta * grad_w L_train(w, alpha) (the SGD step the weight optimizer is about to take,
momentum and weight decay included), where the term d w'/d alpha needs a Hessian-vector product,
approximated by central finite differences as DARTS does:
    grad_alpha L_val(w', alpha) - eta * [grad_alpha L_train(w+, alpha) - grad_alpha L_train(w-, alpha)] / 2r
with w+- = w +- r * grad_w' L_val(w', alpha) and r = 0.01 / ||grad_w' L_val||.

`penalty(model) -> scalar tensor` (optional; e.g. nasr.nas.cost.CostPenalty) is a term of the alpha
loss that depends on the alphas only: its gradient is added to the alphas' in either order.
"""
from __future__ import annotations

from typing import Callable, List, Optional

import torch

LossFn = Callable[[torch.nn.Module, object], torch.Tensor]


def _flat_norm(tensors: List[torch.Tensor]) -> torch.Tensor:
    return torch.sqrt(sum((t.detach().float() ** 2).sum() for t in tensors))


def alpha_step_amp(amp):
    """The autocast dtype of the architect's (alpha) step: the weight step's in bf16, fp32 with
    fp16. The alpha step takes its gradients with torch.autograd.grad, which a GradScaler does not
    see, and its second-order form subtracts two nearly equal gradients (the finite-difference
    Hessian-vector product): unscaled fp16 gradients of the small alpha contributions underflow,
    so with fp16 only the weight step is mixed precision. bf16 has fp32's exponent range."""
    return amp if amp is torch.bfloat16 else None


class Architect:
    def __init__(self, model, loss_fn: LossFn, lr: float = 3e-4, betas=(0.5, 0.999),
                 weight_decay: float = 1e-3, unrolled: bool = False, w_momentum: float = 0.9,
                 w_weight_decay: float = 3e-4, fd_radius: float = 0.01,
                 penalty: Optional[Callable[[torch.nn.Module], torch.Tensor]] = None):
        self.model = model
        self.loss_fn = loss_fn
        self.unrolled = unrolled
        self.w_momentum = w_momentum
        self.w_weight_decay = w_weight_decay
        self.fd_radius = fd_radius
        self.penalty = penalty
        self.optimizer = torch.optim.Adam(model.arch_parameters(), lr=lr, betas=betas,
                                          weight_decay=weight_decay)
        self._unrolled_model = None  # built once, refilled every step (building is not free)

    # -- public ---------------------------------------------------------------------------------
    def step(self, train_batch, valid_batch, eta: Optional[float] = None, w_optimizer=None) -> float:
        """One Adam step on the alphas; returns the validation loss it descended.

        `eta` (the weight learning rate now) and `w_optimizer` (for its momentum buffers) are only
        needed by the second-order step.
        """
        alphas = self.model.arch_parameters()
        if self.unrolled:
            if eta is None:
                raise ValueError("the second-order (unrolled) step needs eta, the current weight lr")
            loss, grads = self._unrolled_grads(train_batch, valid_batch, eta, w_optimizer)
        else:
            loss = self.loss_fn(self.model, valid_batch)
            # Only the alphas: autograd then skips every weight gradient of the network.
            grads = torch.autograd.grad(loss, alphas)
        if self.penalty is not None:
            term = self.penalty(self.model)
            if term.requires_grad:  # 0 without a graph while the constraint is met
                extra = torch.autograd.grad(term, alphas, allow_unused=True)
                grads = [g if e is None else g + e for g, e in zip(grads, extra)]
        self.optimizer.zero_grad(set_to_none=True)
        for a, g in zip(alphas, grads):
            a.grad = g.detach()
        self.optimizer.step()
        return float(loss.detach())

    def state_dict(self):
        return {"optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state):
        self.optimizer.load_state_dict(state["optimizer"])

    # -- second order ---------------------------------------------------------------------------
    def _weight_step(self, train_batch, eta: float, w_optimizer):
        """w' = w - eta * (momentum * buf + grad + wd * w): the SGD step, taken on a copy."""
        weights = self.model.weight_parameters()
        loss = self.loss_fn(self.model, train_batch)
        grads = torch.autograd.grad(loss, weights, allow_unused=True)
        new_weights = []
        with torch.no_grad():
            for w, g in zip(weights, grads):
                d = torch.zeros_like(w) if g is None else g.clone()
                d.add_(w, alpha=self.w_weight_decay)
                if w_optimizer is not None:
                    buf = w_optimizer.state.get(w, {}).get("momentum_buffer")
                    if buf is not None:
                        d.add_(buf, alpha=self.w_momentum)
                new_weights.append(w - eta * d)
        return new_weights

    def _fill_unrolled(self, new_weights):
        if self._unrolled_model is None:
            self._unrolled_model = self.model.new()
        m = self._unrolled_model
        m.train(self.model.training)
        with torch.no_grad():
            for dst, src in zip(m.arch_parameters(), self.model.arch_parameters()):
                dst.copy_(src)
            for dst, src in zip(m.weight_parameters(), new_weights):
                dst.copy_(src)
            for (name, dst), (_, src) in zip(m.named_buffers(), self.model.named_buffers()):
                dst.copy_(src)
            if hasattr(self.model, "op_dropout_state"):
                m.set_op_dropout(self.model.op_dropout_state())
        return m

    def _unrolled_grads(self, train_batch, valid_batch, eta, w_optimizer):
        unrolled = self._fill_unrolled(self._weight_step(train_batch, eta, w_optimizer))
        u_alphas, u_weights = unrolled.arch_parameters(), unrolled.weight_parameters()
        loss = self.loss_fn(unrolled, valid_batch)
        grads = torch.autograd.grad(loss, u_alphas + u_weights, allow_unused=True)
        n_arch = len(u_alphas)  # alphas, and PC-DARTS's betas when the network has them
        d_alpha = [g if g is not None else torch.zeros_like(a)
                   for g, a in zip(grads[:n_arch], u_alphas)]
        vector = [g if g is not None else torch.zeros_like(w)
                  for g, w in zip(grads[n_arch:], u_weights)]
        implicit = self._hessian_vector_product(vector, train_batch)
        return loss, [da - eta * ih for da, ih in zip(d_alpha, implicit)]

    def _hessian_vector_product(self, vector, train_batch):
        weights = self.model.weight_parameters()
        alphas = self.model.arch_parameters()
        norm = _flat_norm(vector)
        if float(norm) == 0.0:
            return [torch.zeros_like(a) for a in alphas]
        r = self.fd_radius / norm
        with torch.no_grad():
            for w, v in zip(weights, vector):
                w.add_(v * r)
        grads_pos = torch.autograd.grad(self.loss_fn(self.model, train_batch), alphas)
        with torch.no_grad():
            for w, v in zip(weights, vector):
                w.sub_(v * (2 * r))
        grads_neg = torch.autograd.grad(self.loss_fn(self.model, train_batch), alphas)
        with torch.no_grad():
            for w, v in zip(weights, vector):
                w.add_(v * r)
        return [(gp - gn) / (2 * r) for gp, gn in zip(grads_pos, grads_neg)]


__all__ = ["Architect", "alpha_step_amp"]
