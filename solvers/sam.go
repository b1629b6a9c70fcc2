package solvers

import (
	"math"

	"github.com/pkg/errors"
	G "gorgonia.org/gorgonia"
)

// WithRho sets the neighbourhood radius ρ of SAM and its kin.
func WithRho(rho float64) Option { return Set("rho", rho) }

// SAM is sharpness-aware minimization (Foret et al., "Sharpness-Aware Minimization for Efficiently
// Improving Generalization") around any base solver, with the adaptive variant ASAM (Kwon et al., "ASAM:
// Adaptive Sharpness-Aware Minimization for Scale-Invariant Learning of Deep Neural Networks"), following
// the reference code davda54/sam:
//
//	g = ∇L(p);  n = ‖(T ⊙ g)‖ over all parameters, T = |p| (adaptive) or 1
//	e = (p² if adaptive else 1) ⊙ g · ρ/(n + 1e-12);  g' = ∇L(p + e)
//	the base solver steps from p (restored exactly) with the gradient g'.
//
// It needs a closure (StepClosure); Step without one is an error. Hyperparameters (defaults): rho (0.05),
// adaptive (false). The base solver's own options (lr, momentum, weight decay, ...) stay on the base.
type SAM struct {
	wrapper
	cfg *config
	old registry // copies of the parameters at p, restored bit for bit after the second pass
}

// NewSAM wraps base.
func NewSAM(base Solver, opts ...Option) (*SAM, error) {
	if base == nil {
		return nil, errors.New("sam: nil base solver")
	}
	c, err := newConfig("sam", []hyperSpec{
		{key: "rho", def: 0.05, check: nonNegative},
		flagSpec("adaptive", false),
	}, opts)
	if err != nil {
		return nil, err
	}
	s := &SAM{wrapper: wrapper{inner: base}, cfg: c}
	s.old.init()
	return s, nil
}

// Kind returns "sam" (or "asam" when adaptive).
func (s *SAM) Kind() string {
	if s.cfg.b("adaptive") {
		return "asam"
	}
	return "sam"
}

// StateBytes returns the base solver's state plus the copy of the parameters SAM keeps between passes.
func (s *SAM) StateBytes() int64 { return s.inner.StateBytes() + s.old.bytes() }

// Step returns an error: SAM evaluates the gradient at a perturbed point and needs a closure.
func (s *SAM) Step([]G.ValueGrad) error {
	return errors.New("sam: needs a closure to re-evaluate the gradient at the perturbed weights; call StepClosure")
}

// StepClosure takes one SAM step: two closure calls (at p and at p + e) and one base step. It returns the
// loss at p. If a closure call fails or a gradient is not finite, the weights are restored and the base
// solver is not stepped.
func (s *SAM) StepClosure(params []G.ValueGrad, closure Closure) (float64, error) {
	if closure == nil {
		return 0, errors.New("sam: nil closure")
	}
	views, err := s.old.resolve(params)
	if err != nil {
		return 0, errors.Wrap(err, "sam")
	}
	if err := s.validate(params); err != nil {
		return 0, err
	}
	zeroGrads(views)
	loss, err := closure()
	if err != nil {
		zeroGrads(views)
		return 0, errors.Wrap(err, "sam: closure at p")
	}
	adaptive := s.cfg.b("adaptive")
	var ss float64
	for i := range views {
		v := &views[i]
		if v.g32 != nil {
			n := weightedNorm(v.w32, v.g32, adaptive)
			ss += n * n
		} else {
			n := weightedNorm(v.w64, v.g64, adaptive)
			ss += n * n
		}
	}
	norm := math.Sqrt(ss)
	if !isFinite(norm) || !isFinite(loss) {
		zeroGrads(views)
		return loss, errors.Errorf("sam: loss %v or gradient norm %v at p is not finite; step refused, nothing changed", loss, norm)
	}
	scaleF := s.cfg.f("rho") / (norm + 1e-12)
	for i := range views {
		v := &views[i]
		st := s.old.state(v, oldPBuffers, zeroInit)
		if v.w32 != nil {
			perturb(v.w32, v.g32, st.b32[0], float32(scaleF), adaptive)
		} else {
			perturb(v.w64, v.g64, st.b64[0], scaleF, adaptive)
		}
	}
	zeroGrads(views)
	_, err = closure()
	for i := range views { // p ← old_p
		v := &views[i]
		st := s.old.states[v.name]
		if v.w32 != nil {
			copy(v.w32, st.b32[0])
		} else {
			copy(v.w64, st.b64[0])
		}
	}
	if err != nil {
		zeroGrads(views)
		return loss, errors.Wrap(err, "sam: closure at p + e")
	}
	return loss, s.inner.Step(params)
}

func zeroGrads(views []view) {
	for i := range views {
		views[i].zeroGrad()
	}
}

// weightedNorm returns ‖|p| ⊙ g‖ (adaptive) or ‖g‖, accumulated in float64.
func weightedNorm[T Float](p, g []T, adaptive bool) float64 {
	var s float64
	for i, x := range g {
		if adaptive {
			x *= abs(p[i])
		}
		s += float64(x) * float64(x)
	}
	return math.Sqrt(s)
}

// perturb saves p into old and moves p by e = (p² or 1)·g·scale.
func perturb[T Float](p, g, old []T, scale T, adaptive bool) {
	for i := range p {
		old[i] = p[i]
		e := g[i]
		if adaptive {
			e = p[i] * p[i] * g[i]
		}
		p[i] += e * scale
	}
}

func (s *SAM) saveState(prefix string, w *stateWriter) error {
	if err := saveConfig(prefix, s.cfg, 0, w); err != nil {
		return err
	}
	return s.saveInner(prefix, w)
}

func (s *SAM) loadState(prefix string, r *stateReader) (func(), error) {
	c, _, err := loadConfig(prefix, s.cfg, r)
	if err != nil {
		return nil, err
	}
	commitInner, err := s.loadInner(prefix, r)
	if err != nil {
		return nil, err
	}
	return func() { *s.cfg = *c; commitInner() }, nil
}

func oldPBuffers() []string { return []string{"old_p"} }

func zeroInit(int) float64 { return 0 }

// validate checks params against SAM's copies and the base solver without changing anything.
func (s *SAM) validate(params []G.ValueGrad) error {
	if _, err := s.old.resolve(params); err != nil {
		return errors.Wrap(err, "sam")
	}
	return s.wrapper.validate(params)
}
