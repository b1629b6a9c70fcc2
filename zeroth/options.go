package zeroth

import (
	"math"

	"github.com/pkg/errors"

	"github.com/gradlab/gradlab/solvers/schedule"
)

// Objective evaluates the model at its current weights and returns the (minibatch) loss. It must be
// forward-only and deterministic within a step: every query of one estimate uses the same minibatch and
// RNG state, with dropout off (MeZO's zo_forward puts the model in eval mode; REFERENCE §3.0).
type Objective func() (loss float64, err error)

// config holds the hyperparameters of the SPSA family (Estimator and MeZO).
type config struct {
	eps          float64
	epsSched     schedule.Schedule
	n            int
	dist         Dist
	oneSided     bool
	sign         bool
	sparsity     float64
	maskEvery    int
	blockWise    bool
	seed         uint64
	lr           float64
	lrSched      schedule.Schedule
	wd           float64
	decay        func(name string) bool
	conservative bool
	fusedOnly    string // name of the first option that only the fused MeZO understands
}

// Option sets a hyperparameter of an Estimator or a MeZO optimizer. Defaults follow MeZO's mezo.sh:
// ε = 1e-3, one Gaussian direction, two-sided, lr = 1e-6 (MeZO uses 1e-6 / 1e-7 for full fine-tuning).
type Option func(*config) error

func defaultConfig() config {
	return config{eps: 1e-3, n: 1, dist: Gaussian, maskEvery: 1, lr: 1e-6, decay: defaultDecay, seed: 42}
}

func (c *config) apply(opts []Option) error {
	for _, o := range opts {
		if err := o(c); err != nil {
			return err
		}
	}
	if c.conservative && c.wd != 0 {
		return errors.New("zeroth: conservative steps (ZO-SGD-Cons) with weight decay are not supported: the decay would change the loss after the candidate was accepted")
	}
	return nil
}

func finitePos(x float64) bool { return x > 0 && !math.IsInf(x, 0) && !math.IsNaN(x) }

// WithEps sets the perturbation size ε of θ ± εz (MeZO's zo_eps, default 1e-3).
func WithEps(eps float64) Option {
	return func(c *config) error {
		if !finitePos(eps) {
			return errors.Errorf("zeroth: eps %v must be a finite positive number", eps)
		}
		c.eps = eps
		return nil
	}
}

// WithEpsSchedule makes ε follow s (indexed by the step count), e.g. Spall's c_t = c/(t+1)^γ (SpallGains).
func WithEpsSchedule(s schedule.Schedule) Option {
	return func(c *config) error {
		if s == nil {
			return errors.New("zeroth: nil eps schedule")
		}
		c.epsSched = s
		return nil
	}
}

// WithDirections sets n, the number of directions averaged per step (n-SPSA, MeZO's appendix; ZO-Bench's
// q): ĝ = (1/n) Σ_i proj_i z_i, at 2n forward passes (n+1 one-sided).
func WithDirections(n int) Option {
	return func(c *config) error {
		if n < 1 {
			return errors.Errorf("zeroth: directions %d must be at least 1", n)
		}
		c.n = n
		return nil
	}
}

// WithDist chooses the distribution of z: Gaussian (MeZO) or Rademacher (Spall's SPSA).
func WithDist(d Dist) Option {
	return func(c *config) error {
		if d != Gaussian && d != Rademacher {
			return errors.Errorf("zeroth: unknown distribution %d", d)
		}
		c.dist = d
		return nil
	}
}

// WithOneSided switches to the one-sided difference proj = (L(θ+εz) − L(θ))/ε, reusing L(θ) across
// directions: n+1 forward passes instead of 2n (ZO-Bench perturbation_mode "one_side").
func WithOneSided(on bool) Option {
	return func(c *config) error { c.oneSided = on; return nil }
}

// WithSign replaces the projected gradient by its sign, ĝ = sign(proj)·z (ZO-Bench ZO-SGD-Sign,
// trainer.py: graddiff_times_z = np.sign(self.projected_grad) * z).
func WithSign(on bool) Option {
	return func(c *config) error { c.sign = on; return nil }
}

// WithSparsity zeroes a random fraction s ∈ [0, 1) of the entries of every z (sparse perturbation,
// ZO-Bench: z[fast_random_mask_like(z, grad_sparsity, generator=sparse_grad_rng)] = 0; like the benchmark
// the kept entries are not rescaled). The mask is drawn from its own seed and resampled every `every`
// steps; it is the same for all directions of a step and is never stored either.
func WithSparsity(s float64, every int) Option {
	return func(c *config) error {
		if !(s >= 0 && s < 1) {
			return errors.Errorf("zeroth: sparsity %v must be in [0, 1)", s)
		}
		if every < 1 {
			return errors.Errorf("zeroth: mask resampling period %d must be at least 1", every)
		}
		c.sparsity, c.maskEvery = s, every
		return nil
	}
}

// WithBlockWise perturbs and updates one parameter tensor per step, cycling through the parameters in
// name order (block-wise perturbation, ZO-Bench "Revisiting Zeroth-Order Optimization...", §5; the
// benchmark's zo_step_with_module_wise_perturbation). The perturbed dimension, hence the variance, falls
// from P to the block's size.
func WithBlockWise(on bool) Option {
	return func(c *config) error { c.blockWise = on; return nil }
}

// WithSeed sets the master seed from which every step's direction seeds are derived.
func WithSeed(seed uint64) Option {
	return func(c *config) error { c.seed = seed; return nil }
}

// WithLR sets the learning rate of the fused MeZO step (MeZO's learning_rate; default 1e-6).
func WithLR(lr float64) Option {
	return func(c *config) error {
		if !(lr >= 0) || math.IsInf(lr, 0) {
			return errors.Errorf("zeroth: learning rate %v must be a finite non-negative number", lr)
		}
		c.lr = lr
		c.noteFused("WithLR")
		return nil
	}
}

// WithSchedule makes the fused MeZO learning rate follow s, indexed by the step count.
func WithSchedule(s schedule.Schedule) Option {
	return func(c *config) error {
		if s == nil {
			return errors.New("zeroth: nil schedule")
		}
		c.lrSched = s
		c.noteFused("WithSchedule")
		return nil
	}
}

// WithWeightDecay sets MeZO's weight decay: θ ← θ − η(proj·z + λθ) for parameters the decay mask selects
// (MeZO zo_update: decayed unless the name contains "bias", "layer_norm" or "layernorm").
func WithWeightDecay(wd float64) Option {
	return func(c *config) error {
		if !(wd >= 0) || math.IsInf(wd, 0) {
			return errors.Errorf("zeroth: weight decay %v must be a finite non-negative number", wd)
		}
		c.wd = wd
		c.noteFused("WithWeightDecay")
		return nil
	}
}

// WithDecayMask replaces the rule choosing which parameters are decayed. The default decays every
// parameter whose name contains neither "bias" nor "norm" (case-insensitive), a superset of MeZO's
// "bias"/"layer_norm"/"layernorm" that also spares RMSNorm gains.
func WithDecayMask(mask func(name string) bool) Option {
	return func(c *config) error {
		if mask == nil {
			return errors.New("zeroth: nil decay mask")
		}
		c.decay = mask
		c.noteFused("WithDecayMask")
		return nil
	}
}

// WithConservative makes the fused step conservative (ZO-Bench ZO-SGD-Cons, trainer.py zo_conserv_step):
// it evaluates L(θ), L(θ − ηĝ) and L(θ + ηĝ) and keeps the lowest, so a step never increases the loss on
// its minibatch. Cost: 2n + 3 forward passes (n + 3 one-sided).
func WithConservative(on bool) Option {
	return func(c *config) error {
		c.conservative = on
		c.noteFused("WithConservative")
		return nil
	}
}

func (c *config) noteFused(name string) {
	if c.fusedOnly == "" {
		c.fusedOnly = name
	}
}

// defaultDecay decays parameters whose names contain neither "bias" nor "norm", without allocating.
func defaultDecay(name string) bool {
	return !containsFold(name, "bias") && !containsFold(name, "norm")
}

// containsFold reports whether s contains the lower-case ASCII word sub, ignoring ASCII case.
func containsFold(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		ok := true
		for k := 0; k < len(sub); k++ {
			b := s[i+k]
			if 'A' <= b && b <= 'Z' {
				b += 'a' - 'A'
			}
			if b != sub[k] {
				ok = false
				break
			}
		}
		if ok {
			return true
		}
	}
	return false
}

// SpallGains are Spall's gain sequences for SPSA ("Implementation of the Simultaneous Perturbation
// Algorithm for Stochastic Optimization", IEEE TAES 1998): a_t = a/(t+1+A)^α, c_t = c/(t+1)^γ with the
// asymptotically optimal α = 0.602, γ = 0.101. Use LR() with WithSchedule and Eps() with WithEpsSchedule;
// with WithDist(Rademacher) this is Spall's SPSA (REFERENCE §3.3).
type SpallGains struct {
	A, StabA, Alpha, C, Gamma float64
}

// NewSpallGains returns Spall's gains with α = 0.602 and γ = 0.101.
func NewSpallGains(a, stabA, c float64) SpallGains {
	return SpallGains{A: a, StabA: stabA, Alpha: 0.602, C: c, Gamma: 0.101}
}

// LR returns the schedule a_t = a/(t+1+A)^α.
func (s SpallGains) LR() schedule.Schedule {
	return schedule.Func(func(t int) float64 { return s.A / math.Pow(float64(t)+1+s.StabA, s.Alpha) })
}

// Eps returns the schedule c_t = c/(t+1)^γ.
func (s SpallGains) Eps() schedule.Schedule {
	return schedule.Func(func(t int) float64 { return s.C / math.Pow(float64(t)+1, s.Gamma) })
}
