package solvers

import (
	"math"

	"github.com/pkg/errors"
	G "gorgonia.org/gorgonia"

	"github.com/gradlab/gradlab/solvers/schedule"
)

// wrapper is the part every wrapper shares: it delegates the learning rate to the solver it wraps.
type wrapper struct {
	inner Solver
	views registry // view scratch only; wrappers keep no per-parameter state here
}

// LR returns the wrapped solver's learning rate.
func (w *wrapper) LR() float64 { return w.inner.LR() }

// SetLR sets the wrapped solver's learning rate.
func (w *wrapper) SetLR(lr float64) error { return w.inner.SetLR(lr) }

// SetSchedule sets the wrapped solver's schedule.
func (w *wrapper) SetSchedule(s schedule.Schedule) error { return w.inner.SetSchedule(s) }

// Inner returns the wrapped solver.
func (w *wrapper) Inner() Solver { return w.inner }

// validate checks params against the wrapped solver without changing anything.
func (w *wrapper) validate(params []G.ValueGrad) error {
	if v, ok := w.inner.(validator); ok {
		return v.validate(params)
	}
	return nil
}

// validator is implemented by solvers that can check a step's parameters without taking it.
type validator interface {
	validate(params []G.ValueGrad) error
}

func (o *Optimizer) validate(params []G.ValueGrad) error {
	_, err := o.reg.resolve(params)
	return errors.Wrap(err, o.cfg.kind)
}

func (w *wrapper) saveInner(prefix string, sw *stateWriter) error {
	st, ok := w.inner.(stateful)
	if !ok {
		return errors.Errorf("wrapped solver %T cannot save its state", w.inner)
	}
	return st.saveState(prefix+"inner.", sw)
}

func (w *wrapper) loadInner(prefix string, r *stateReader) (func(), error) {
	st, ok := w.inner.(stateful)
	if !ok {
		return nil, errors.Errorf("wrapped solver %T cannot load state", w.inner)
	}
	return st.loadState(prefix+"inner.", r)
}

// gradNorm returns the Euclidean norm of all gradients together (accumulated in float64).
func gradNorm(views []view) float64 {
	var ss float64
	for i := range views {
		v := &views[i]
		if v.g32 != nil {
			ss += sumSquares(v.g32)
		} else {
			ss += sumSquares(v.g64)
		}
	}
	return math.Sqrt(ss)
}

func sumSquares[T Float](x []T) float64 {
	var s float64
	for _, e := range x {
		s += float64(e) * float64(e)
	}
	return s
}

func scale[T Float](x []T, c T) {
	for i := range x {
		x[i] *= c
	}
}

// ClipNorm clips the gradients by their global norm before the wrapped solver's step (Pascanu et al., "On
// the difficulty of training Recurrent Neural Networks"), as torch.nn.utils.clip_grad_norm_: with
// n = ‖(g_1, ..., g_k)‖₂ over all parameters, every gradient is multiplied by min(1, maxNorm/(n + 1e-6)).
// A non-finite gradient is passed on unclipped, so the wrapped solver's non-finite policy applies.
type ClipNorm struct {
	wrapper
	maxNorm  float64
	lastNorm float64
}

// NewClipNorm wraps inner with global-norm clipping at maxNorm (> 0).
func NewClipNorm(inner Solver, maxNorm float64) (*ClipNorm, error) {
	if inner == nil {
		return nil, errors.New("clip_norm: nil inner solver")
	}
	if !(maxNorm > 0) || math.IsInf(maxNorm, 0) {
		return nil, errors.Errorf("clip_norm: max norm %v must be positive and finite", maxNorm)
	}
	return &ClipNorm{wrapper: wrapper{inner: inner}, maxNorm: maxNorm}, nil
}

// Kind returns "clip_norm(<inner>)".
func (c *ClipNorm) Kind() string { return "clip_norm(" + c.inner.Kind() + ")" }

// LastNorm returns the gradient norm before clipping at the last step (for logging).
func (c *ClipNorm) LastNorm() float64 { return c.lastNorm }

// StateBytes returns the wrapped solver's state size (clipping keeps none).
func (c *ClipNorm) StateBytes() int64 { return c.inner.StateBytes() }

// Step clips the gradients and steps the wrapped solver.
func (c *ClipNorm) Step(params []G.ValueGrad) error {
	views, err := c.views.resolve(params)
	if err != nil {
		return errors.Wrap(err, "clip_norm")
	}
	if err := c.validate(params); err != nil {
		return err
	}
	n := gradNorm(views)
	if !isFinite(n) {
		// Nothing to clip: the wrapped solver applies its non-finite policy (refuse by default).
		return c.inner.Step(params)
	}
	c.lastNorm = n
	if coef := c.maxNorm / (n + 1e-6); coef < 1 {
		for i := range views {
			v := &views[i]
			if v.g32 != nil {
				scale(v.g32, float32(coef))
			} else {
				scale(v.g64, coef)
			}
		}
	}
	return c.inner.Step(params)
}

func (c *ClipNorm) saveState(prefix string, w *stateWriter) error {
	if err := w.putMeta(prefix+"kind", "clip_norm"); err != nil {
		return err
	}
	return c.saveInner(prefix, w)
}

func (c *ClipNorm) loadState(prefix string, r *stateReader) (func(), error) {
	if err := checkKind(prefix, "clip_norm", r); err != nil {
		return nil, err
	}
	return c.loadInner(prefix, r)
}

func checkKind(prefix, want string, r *stateReader) error {
	var kind string
	if err := r.getMeta(prefix+"kind", &kind); err != nil {
		return err
	}
	if kind != want {
		return errors.Errorf("state file is for %q, this solver is %q", kind, want)
	}
	return nil
}

// ClipValue clamps every gradient element to [−c, c] before the wrapped solver's step
// (torch.nn.utils.clip_grad_value_). A non-finite gradient is passed on unclamped, so the wrapped solver's
// non-finite policy applies.
type ClipValue struct {
	wrapper
	c float64
}

// NewClipValue wraps inner with elementwise clipping at c (> 0).
func NewClipValue(inner Solver, c float64) (*ClipValue, error) {
	if inner == nil {
		return nil, errors.New("clip_value: nil inner solver")
	}
	if !(c > 0) || math.IsInf(c, 0) {
		return nil, errors.Errorf("clip_value: bound %v must be positive and finite", c)
	}
	return &ClipValue{wrapper: wrapper{inner: inner}, c: c}, nil
}

// Kind returns "clip_value(<inner>)".
func (c *ClipValue) Kind() string { return "clip_value(" + c.inner.Kind() + ")" }

// StateBytes returns the wrapped solver's state size.
func (c *ClipValue) StateBytes() int64 { return c.inner.StateBytes() }

// Step clamps the gradients and steps the wrapped solver.
func (c *ClipValue) Step(params []G.ValueGrad) error {
	views, err := c.views.resolve(params)
	if err != nil {
		return errors.Wrap(err, "clip_value")
	}
	if err := c.validate(params); err != nil {
		return err
	}
	for i := range views {
		if !views[i].gradFinite() {
			// Not clamped: the wrapped solver applies its non-finite policy (refuse by default).
			return c.inner.Step(params)
		}
	}
	for i := range views {
		v := &views[i]
		if v.g32 != nil {
			clamp(v.g32, float32(c.c))
		} else {
			clamp(v.g64, c.c)
		}
	}
	return c.inner.Step(params)
}

func clamp[T Float](x []T, c T) {
	for i, e := range x {
		x[i] = min(max(e, -c), c)
	}
}

func (c *ClipValue) saveState(prefix string, w *stateWriter) error {
	if err := w.putMeta(prefix+"kind", "clip_value"); err != nil {
		return err
	}
	return c.saveInner(prefix, w)
}

func (c *ClipValue) loadState(prefix string, r *stateReader) (func(), error) {
	if err := checkKind(prefix, "clip_value", r); err != nil {
		return nil, err
	}
	return c.loadInner(prefix, r)
}
