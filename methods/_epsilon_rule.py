"""LRP's epsilon rule on a layer affine in its input (a convolution, a linear layer) in the one
backward pass autograd makes anyway.

The rule is R_in = x * W^T (R / s(z)), with s(z) = z stabilized by epsilon. zennit's Epsilon lets
the layer's own backward pass run, discards it, then recomputes the layer's output z and takes
a second backward pass through it. Here the relevance arriving at the layer's output is divided
by s(z) before the layer's backward pass (a pre-hook on its gradient node), so that pass itself
gives W^T (R / s(z)), and the input hook multiplies it by x: two of a layer's four passes are
left out, and the result is zennit's, whose recomputed z is the stored one.
"""
from __future__ import annotations

import weakref


def one_pass_epsilon(z, epsilon):
    """A zennit hook template of the epsilon rule (`epsilon` a number, or a stabilizer function as
    zennit takes it); `z` is the zennit package."""
    stabilize = z.core.Stabilizer.ensure(epsilon)

    class OnePassEpsilon(z.core.Hook):
        def forward(self, module, input, output):
            # the output's own memory: an in-place activation after the layer changes the tensor
            self.stored_tensors["input"], self.stored_tensors["output"] = input[0], output.detach().clone()

        def post_forward(self, module, input, output):
            hook = weakref.ref(self)

            def divide(grad_outputs):
                found = hook()
                if found is None or not found.active:
                    return None
                found.stored_tensors["grad_output"] = grad_outputs  # read by zennit's input hook
                return (grad_outputs[0] / stabilize(found.stored_tensors["output"]), *grad_outputs[1:])

            if output.grad_fn is not None:
                self.tensor_handles.append(output.grad_fn.register_prehook(divide))
            return output

        def backward(self, module, grad_input, grad_output):
            return (self.stored_tensors["input"] * grad_input[0],)

        def copy(self):
            return OnePassEpsilon()

    return OnePassEpsilon()
