package solvers

import (
	"math"
	"sort"
	"strings"

	"github.com/pkg/errors"
	"gorgonia.org/tensor"

	"github.com/gradlab/gradlab/solvers/schedule"
)

// Option configures a solver at construction. Options name hyperparameters by the canonical keys of the
// literature (and of torch.optim): "lr", "beta1", "beta2", "eps", "weight_decay", "momentum", ... An option
// that the solver does not have is an error, not silently ignored; a value outside its valid range is an
// error too.
type Option func(c *config) error

// config is what options write into: the hyperparameter values (flags are stored as 0 or 1) and the
// settings common to every solver.
type config struct {
	kind      string
	specs     []hyperSpec
	vals      map[string]float64
	sched     schedule.Schedule
	mask      DecayMask
	nonFinite NonFinitePolicy
}

// hyperSpec declares one hyperparameter of a solver: its key, default and valid range.
type hyperSpec struct {
	key   string
	def   float64
	check func(float64) error
	flag  bool
}

func (c *config) spec(key string) (hyperSpec, bool) {
	for _, s := range c.specs {
		if s.key == key {
			return s, true
		}
	}
	return hyperSpec{}, false
}

func (c *config) keys() string {
	ks := make([]string, 0, len(c.specs))
	for _, s := range c.specs {
		ks = append(ks, s.key)
	}
	sort.Strings(ks)
	return strings.Join(ks, ", ")
}

func (c *config) set(key string, v float64) error {
	s, ok := c.spec(key)
	if !ok {
		return errors.Errorf("%s has no hyperparameter %q (it has: %s)", c.kind, key, c.keys())
	}
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return errors.Errorf("%s: %s = %v is not finite", c.kind, key, v)
	}
	if s.flag && v != 0 && v != 1 {
		return errors.Errorf("%s: %s is a flag, got %v", c.kind, key, v)
	}
	if s.check != nil {
		if err := s.check(v); err != nil {
			return errors.Wrapf(err, "%s: %s = %v", c.kind, key, v)
		}
	}
	c.vals[key] = v
	return nil
}

// newConfig builds a config of kind with the given hyperparameters at their defaults, then applies opts.
func newConfig(kind string, specs []hyperSpec, opts []Option) (*config, error) {
	c := &config{kind: kind, specs: specs, vals: make(map[string]float64, len(specs))}
	for _, s := range specs {
		c.vals[s.key] = s.def
	}
	for _, o := range opts {
		if o == nil {
			continue
		}
		if err := o(c); err != nil {
			return nil, err
		}
	}
	return c, nil
}

func (c *config) f(key string) float64 {
	v, ok := c.vals[key]
	if !ok {
		panic("solvers: internal error: hyperparameter " + key + " not declared for " + c.kind)
	}
	return v
}

func (c *config) b(key string) bool { return c.f(key) != 0 }

// Set sets the hyperparameter key (a canonical name such as "lr", "momentum_decay") to v. Flags take 0 or 1.
func Set(key string, v float64) Option { return func(c *config) error { return c.set(key, v) } }

// SetFlag sets the boolean hyperparameter key (such as "amsgrad", "nesterov", "centered").
func SetFlag(key string, on bool) Option {
	return func(c *config) error {
		v := 0.0
		if on {
			v = 1
		}
		return c.set(key, v)
	}
}

// WithLR sets a constant learning rate.
func WithLR(lr float64) Option { return Set("lr", lr) }

// WithSchedule makes the learning rate follow s: the step about to be taken (0, 1, ...) gets s.At(step).
func WithSchedule(s schedule.Schedule) Option {
	return func(c *config) error {
		if _, ok := c.spec("lr"); !ok {
			return errors.Errorf("%s has no learning rate to schedule", c.kind)
		}
		if s == nil {
			return errors.New("WithSchedule: nil schedule")
		}
		c.sched = s
		return nil
	}
}

// WithBetas sets the exponential decay rates of the first and second moments (beta1, beta2).
func WithBetas(beta1, beta2 float64) Option {
	return func(c *config) error {
		if err := c.set("beta1", beta1); err != nil {
			return err
		}
		return c.set("beta2", beta2)
	}
}

// WithEps sets the numerical-stability constant epsilon.
func WithEps(eps float64) Option { return Set("eps", eps) }

// WithWeightDecay sets the weight-decay coefficient; whether it is coupled (L2 added to the gradient) or
// decoupled (AdamW-style shrinkage) is fixed by the method, as its paper defines it.
func WithWeightDecay(wd float64) Option { return Set("weight_decay", wd) }

// WithMomentum sets the momentum coefficient.
func WithMomentum(mu float64) Option { return Set("momentum", mu) }

// WithNesterov switches Nesterov momentum on or off.
func WithNesterov(on bool) Option { return SetFlag("nesterov", on) }

// WithAMSGrad switches the AMSGrad maximum of the second moment on or off (Reddi et al., "On the
// Convergence of Adam and Beyond").
func WithAMSGrad(on bool) Option { return SetFlag("amsgrad", on) }

// DecayMask decides per parameter whether weight decay applies to it.
type DecayMask func(name string, shape tensor.Shape) bool

// NoDecayOnVectors is the usual mask: decay matrices and higher-order tensors, not 1-D (or scalar)
// parameters such as biases and normalisation gains.
func NoDecayOnVectors(name string, shape tensor.Shape) bool { return shape.Dims() >= 2 }

// WithDecayMask restricts weight decay to the parameters for which mask returns true.
func WithDecayMask(mask DecayMask) Option {
	return func(c *config) error {
		if _, ok := c.spec("weight_decay"); !ok {
			return errors.Errorf("%s has no weight decay to mask", c.kind)
		}
		c.mask = mask
		return nil
	}
}

// NonFinitePolicy says what a solver does when a gradient holds NaN or Inf.
type NonFinitePolicy int

const (
	// RefuseNonFinite returns an error; weights, state and gradients are left as they were. The default.
	RefuseNonFinite NonFinitePolicy = iota
	// SkipNonFinite skips the step without error: weights and state are untouched and the gradients are
	// zeroed (as after a step); the solver counts skipped steps.
	SkipNonFinite
	// IgnoreNonFinite does not check (the fastest; NaN then propagates into weights and state).
	IgnoreNonFinite
)

// WithNonFinite sets the policy for non-finite gradients.
func WithNonFinite(p NonFinitePolicy) Option {
	return func(c *config) error {
		if p < RefuseNonFinite || p > IgnoreNonFinite {
			return errors.Errorf("unknown non-finite policy %d", p)
		}
		c.nonFinite = p
		return nil
	}
}

// Validators for hyperparameter ranges.

func nonNegative(v float64) error {
	if v < 0 {
		return errors.New("must be >= 0")
	}
	return nil
}

func positive(v float64) error {
	if v <= 0 {
		return errors.New("must be > 0")
	}
	return nil
}

// unitInterval accepts [0, 1): decay rates such as betas and momentum.
func unitInterval(v float64) error {
	if v < 0 || v >= 1 {
		return errors.New("must be in [0, 1)")
	}
	return nil
}

// closedUnit accepts [0, 1]: interpolation factors and dampening.
func closedUnit(v float64) error {
	if v < 0 || v > 1 {
		return errors.New("must be in [0, 1]")
	}
	return nil
}

func positiveInt(v float64) error {
	if v < 1 || v != math.Trunc(v) {
		return errors.New("must be a positive integer")
	}
	return nil
}

// Common hyperparameter declarations.
func lrSpec(def float64) hyperSpec  { return hyperSpec{key: "lr", def: def, check: nonNegative} }
func epsSpec(def float64) hyperSpec { return hyperSpec{key: "eps", def: def, check: nonNegative} }
func wdSpec(def float64) hyperSpec {
	return hyperSpec{key: "weight_decay", def: def, check: nonNegative}
}
func flagSpec(key string, def bool) hyperSpec {
	d := 0.0
	if def {
		d = 1
	}
	return hyperSpec{key: key, def: d, flag: true}
}
func betaSpec(key string, def float64) hyperSpec {
	return hyperSpec{key: key, def: def, check: unitInterval}
}
