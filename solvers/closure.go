package solvers

import G "gorgonia.org/gorgonia"

// Closure re-evaluates the model at the current parameter values: it runs the forward and the backward
// pass, leaving the gradients in the parameters' gradient tensors, and returns the loss. The solver zeroes
// the gradients before each call, so a Gorgonia closure is just: reset the machine, RunAll, read the cost.
type Closure func() (loss float64, err error)

// ClosureSolver is a method that needs more than one gradient per step (SAM, L-BFGS, line searches): it
// calls the closure as often as it needs, starting at the current parameters (gradients present on entry
// are ignored), and returns the loss at the parameters it started from. After the step the gradients are
// zero.
type ClosureSolver interface {
	StepClosure(params []G.ValueGrad, closure Closure) (loss float64, err error)
}
