package solvers

import (
	"math"

	"github.com/pkg/errors"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// LossSolver is implemented by solvers whose step needs the scalar minibatch loss at the current weights
// (the "Loss" fit of REFERENCE §0.1), such as the stochastic Polyak step. The training loop computes the
// loss and gradients as usual and calls StepLoss instead of Step; such a solver's plain Step returns an
// error saying so.
type LossSolver interface {
	StepLoss(params []G.ValueGrad, loss float64) error
}

// SPS is the stochastic Polyak step size (Loizou, Vaswani, Laradji & Lacoste-Julien, "Stochastic Polyak
// Step-size for SGD: An Adaptive Learning Rate for Fast Convergence") as the authors' code
// (IssamLaradji/sps, sps/sps.py). With f the minibatch loss and ‖g‖ the norm over all parameters of the
// step:
//
//	‖g‖ < 1e-8: no step (γ = 0)
//	SPS_max (default):  γ = min((f − f*)/(c·‖g‖² + eps), γ_b), or 0 if f < f*   (gamma_b 0: no cap)
//	smooth (the code's "smooth_iter"):  γ = min(τ^(1/n_b)·γ_prev, f/(c·‖g‖² + eps)), γ_prev from init_step_size
//	p ← p − lr·γ·g
//
// lr multiplies the Polyak step (1, the reference, by default) so schedules can still be applied. As in the
// reference, the smoothing keeps the last γ, including a 0 from a vanishing gradient. The reference's
// gradient-centralisation options are not implemented. Hyperparameters (defaults): lr (1), c (0.5),
// gamma_b (0: none, the reference's eta_max=None), fstar (0), eps (1e-8), smooth (false),
// gamma (τ = 2), n_batches_per_epoch (n_b = 500), init_step_size (1).
type SPS struct {
	lrControl
	reg      registry
	stepSize float64 // last γ
}

// NewSPS returns the stochastic Polyak step (see SPS); step it with StepLoss.
func NewSPS(opts ...Option) (*SPS, error) {
	c, err := newConfig("sps", []hyperSpec{
		lrSpec(1), {key: "c", def: 0.5, check: positive}, {key: "gamma_b", def: 0, check: nonNegative},
		{key: "fstar", def: 0}, epsSpec(1e-8), flagSpec("smooth", false),
		{key: "gamma", def: 2, check: positive}, {key: "n_batches_per_epoch", def: 500, check: positiveInt},
		{key: "init_step_size", def: 1, check: nonNegative},
	}, opts)
	if err != nil {
		return nil, err
	}
	s := &SPS{lrControl: lrControl{cfg: c}, stepSize: c.f("init_step_size")}
	s.reg.init()
	return s, nil
}

func init() {
	register("sps", func(opts ...Option) (Solver, error) { return NewSPS(opts...) })
}

// Step returns an error: SPS needs the loss; call StepLoss.
func (s *SPS) Step([]G.ValueGrad) error {
	return errors.New("sps: the Polyak step needs the minibatch loss; call StepLoss(params, loss) (solvers.LossSolver)")
}

// StateBytes returns 0: SPS keeps no per-parameter state.
func (s *SPS) StateBytes() int64 { return 0 }

// StepSize returns the Polyak step γ of the last step (before the lr factor).
func (s *SPS) StepSize() float64 { return s.stepSize }

// StepLoss applies one SPS step given the loss at the current weights; on any error nothing is changed.
func (s *SPS) StepLoss(params []G.ValueGrad, loss float64) error {
	if !isFinite(loss) {
		return errors.Errorf("sps: loss %v is not finite; step refused, nothing changed", loss)
	}
	views, err := s.reg.resolve(params)
	if err != nil {
		return errors.Wrap(err, "sps")
	}
	if skip, err := s.reg.screen(views, s.cfg.nonFinite); skip || err != nil {
		return errors.Wrap(err, "sps")
	}
	lr, err := s.stepLR()
	if err != nil {
		return err
	}
	gn2 := 0.0
	for i := range views {
		if views[i].g32 != nil {
			gn2 += sumSquares(views[i].g32)
		} else {
			gn2 += sumSquares(views[i].g64)
		}
	}
	c, eps, fstar := s.cfg.f("c"), s.cfg.f("eps"), s.cfg.f("fstar")
	gamma := 0.0
	if math.Sqrt(gn2) >= 1e-8 {
		if s.cfg.b("smooth") {
			coeff := math.Pow(s.cfg.f("gamma"), 1/s.cfg.f("n_batches_per_epoch"))
			gamma = min(coeff*s.stepSize, loss/(c*gn2+eps))
		} else if loss >= fstar {
			gamma = (loss - fstar) / (c*gn2 + eps)
			if b := s.cfg.f("gamma_b"); b > 0 {
				gamma = min(gamma, b)
			}
		}
	}
	step := lr * gamma
	for i := range views {
		v := &views[i]
		if v.dtype == tensor.Float32 {
			spsApply(v.w32, v.g32, step)
		} else {
			spsApply(v.w64, v.g64, step)
		}
	}
	s.stepSize = gamma
	s.steps++
	return nil
}

func spsApply[T Float](p, g []T, step float64) {
	st := T(step)
	for i := range p {
		p[i] -= st * g[i]
		g[i] = 0
	}
}

func (s *SPS) saveState(prefix string, w *stateWriter) error {
	if err := saveConfig(prefix, s.cfg, s.steps, w); err != nil {
		return err
	}
	if err := w.putMeta(prefix+"skipped", s.reg.skipped); err != nil {
		return err
	}
	return w.putTensor(prefix+"sps.step_size", stateTensor{dtype: tensor.Float64, shape: []int{1}, f64: []float64{s.stepSize}})
}

func (s *SPS) loadState(prefix string, r *stateReader) (func(), error) {
	c, steps, err := loadConfig(prefix, s.cfg, r)
	if err != nil {
		return nil, err
	}
	var skipped int64
	if err := r.getMeta(prefix+"skipped", &skipped); err != nil {
		return nil, err
	}
	t, err := r.getTensor(prefix+"sps.step_size", tensor.Float64, []int{1})
	if err != nil {
		return nil, err
	}
	return func() {
		*s.cfg = *c
		s.steps = steps
		s.reg.skipped = skipped
		s.stepSize = t.f64[0]
	}, nil
}
