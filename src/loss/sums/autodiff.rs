//! The op under burn's autodiff: the forward of the inner backend, and a backward pass that
//! gathers the upstream bin gradients by id ([`InstanceSumsBackend::instance_sums_backward`]).

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind, unary};
use burn::backend::tensor::{FloatTensor, IntTensor};
use burn::backend::{Autodiff, AutodiffBackend, Backend};

use super::InstanceSumsBackend;
use super::spec::InstanceSumsSpec;

/// The backward step of the sums: its state is what the gradient pass reads again.
#[derive(Debug)]
struct InstanceSumsStep;

impl<B: Backend + InstanceSumsBackend> Backward<B, 1> for InstanceSumsStep {
    type State = (FloatTensor<B>, IntTensor<B>, InstanceSumsSpec);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let (x, ids, spec) = ops.state;
        // The gradient comes back in `x`'s dtype whatever the sums' dtype.
        unary::<B, _>(ops.parents, ops.node, grads, |grad| B::instance_sums_backward(grad, x, ids, spec));
    }
}

impl<B: Backend + InstanceSumsBackend, C: CheckpointStrategy> InstanceSumsBackend for Autodiff<B, C> {
    fn instance_sums(x: FloatTensor<Self>, ids: IntTensor<Self>, spec: InstanceSumsSpec) -> FloatTensor<Self> {
        let node = x.node();
        let x = x.into_primitive();
        let sums = B::instance_sums(x.clone(), ids.clone(), spec);
        match InstanceSumsStep.prepare::<C>([node]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => prep.finish((x, ids, spec), sums),
            OpsKind::UnTracked(prep) => prep.finish(sums),
        }
    }

    /// The gradient pass itself is not differentiated (no second-order gradients).
    fn instance_sums_backward(
        grad: FloatTensor<Self>,
        x: FloatTensor<Self>,
        ids: IntTensor<Self>,
        spec: InstanceSumsSpec,
    ) -> FloatTensor<Self> {
        let dx = B::instance_sums_backward(Self::inner(grad), Self::inner(x), ids, spec);
        Self::from_inner(dx)
    }
}
