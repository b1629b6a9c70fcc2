package solvers

import (
	"math"

	"github.com/pkg/errors"
	G "gorgonia.org/gorgonia"
)

// GClip is δ-regularized gradient clipping (Tucat, Mukherjee, Sen, Sun & Rivasplata, "Regularized Gradient
// Clipping Provably Trains Wide and Deep Neural Networks", Definition 2 / the stochastic form of
// Definition 5), as a wrapper around any solver. The paper's step is
//
//	w_{t+1} = w_t − h(w_t)·∇L(w_t),   h(w_t) = η·min{1, max{δ, γ/‖∇L(w_t)‖}},
//
// so the step size stays in [ηδ, η]. The wrapper multiplies the gradients by
// m = min{1, max{δ, γ/‖g‖}}, with ‖g‖ the Euclidean norm of all gradients of the step together (as the
// authors' code, mingfeisun/delta-gclip optim/dGClip.py, concatenates a parameter group's gradients), and
// then steps the wrapped solver: with plain SGD this is exactly the paper's rule; around an adaptive
// solver the multiplier acts on the gradient it sees. As in the reference, a zero gradient norm leaves
// the gradient as it is (it is zero) and the norm has no ε added.
//
// Hyperparameters (defaults from the authors' optim/dGClip.py): gamma (0.1, > 0), delta (0.001, in
// [0, 1]; 0 gives the paper's plain GClip), per_tensor (off; on, each tensor uses its own norm, the
// authors' "deltaGClip_c" variant). A non-finite gradient is passed on unscaled, so the wrapped solver's
// non-finite policy applies.
type GClip struct {
	wrapper
	cfg        *config
	gamma      float64
	delta      float64
	perTensor  bool
	steps      int64
	lastNorm   float64
	lastFactor float64
	norms      []float64 // scratch, grown once
}

// NewGClip wraps inner with δ-GClip; hyperparameters "gamma", "delta", "per_tensor".
func NewGClip(inner Solver, opts ...Option) (*GClip, error) {
	if inner == nil {
		return nil, errors.New("gclip: nil inner solver")
	}
	c, err := newConfig("gclip", []hyperSpec{
		{key: "gamma", def: 0.1, check: positive},
		{key: "delta", def: 0.001, check: closedUnit},
		flagSpec("per_tensor", false),
	}, opts)
	if err != nil {
		return nil, err
	}
	g := &GClip{wrapper: wrapper{inner: inner}, cfg: c}
	g.applyConfig()
	return g, nil
}

func (g *GClip) applyConfig() {
	g.gamma, g.delta, g.perTensor = g.cfg.f("gamma"), g.cfg.f("delta"), g.cfg.b("per_tensor")
}

// Kind returns "gclip(<inner>)".
func (g *GClip) Kind() string { return "gclip(" + g.inner.Kind() + ")" }

// StateBytes returns the wrapped solver's state size (δ-GClip keeps none).
func (g *GClip) StateBytes() int64 { return g.inner.StateBytes() }

// LastNorm returns the global gradient norm before scaling at the last step (with per_tensor, the last
// tensor's norm).
func (g *GClip) LastNorm() float64 { return g.lastNorm }

// LastFactor returns the multiplier min{1, max{δ, γ/‖g‖}} applied at the last step.
func (g *GClip) LastFactor() float64 { return g.lastFactor }

// gclipFactor is the δ-GClip multiplier for a gradient of norm n (1 for a zero norm, as the gradient is
// zero then).
func gclipFactor(n, gamma, delta float64) float64 {
	if n == 0 {
		return 1
	}
	return math.Min(1, math.Max(delta, gamma/n))
}

// Step scales the gradients and steps the wrapped solver.
func (g *GClip) Step(params []G.ValueGrad) error {
	views, err := g.views.resolve(params)
	if err != nil {
		return errors.Wrap(err, "gclip")
	}
	if err := g.validate(params); err != nil {
		return err
	}
	for i := range views {
		if !views[i].gradFinite() {
			// Not scaled: the wrapped solver applies its non-finite policy (refuse by default).
			return g.inner.Step(params)
		}
	}
	// Norms first (per tensor, or one global norm), so a refusal happens before anything is scaled.
	g.norms = g.norms[:0]
	if g.perTensor {
		for i := range views {
			g.norms = append(g.norms, gradNorm(views[i:i+1]))
		}
	} else {
		g.norms = append(g.norms, gradNorm(views))
	}
	for _, n := range g.norms {
		if !isFinite(n) {
			// Finite elements whose squares overflow: scaling by γ/∞ would shrink the step silently.
			return errors.Errorf("gclip: gradient norm overflows (%v); step refused, nothing changed", n)
		}
	}
	for i := range views {
		n := g.norms[0]
		if g.perTensor {
			n = g.norms[i]
		}
		g.lastNorm, g.lastFactor = n, gclipFactor(n, g.gamma, g.delta)
		gclipScale(&views[i], g.lastFactor)
	}
	if err := g.inner.Step(params); err != nil {
		return err
	}
	g.steps++
	return nil
}

func gclipScale(v *view, f float64) {
	if f == 1 {
		return
	}
	if v.g32 != nil {
		scale(v.g32, float32(f))
	} else {
		scale(v.g64, f)
	}
}

func (g *GClip) saveState(prefix string, w *stateWriter) error {
	if err := saveConfig(prefix, g.cfg, g.steps, w); err != nil {
		return err
	}
	return g.saveInner(prefix, w)
}

func (g *GClip) loadState(prefix string, r *stateReader) (func(), error) {
	c, steps, err := loadConfig(prefix, g.cfg, r)
	if err != nil {
		return nil, err
	}
	commitInner, err := g.loadInner(prefix, r)
	if err != nil {
		return nil, err
	}
	return func() {
		*g.cfg = *c
		g.applyConfig()
		g.steps = steps
		commitInner()
	}, nil
}
