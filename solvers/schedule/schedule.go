// Package schedule provides learning-rate schedules for gradlab's optimizers.
//
// As in optax, a schedule maps a step index to the learning rate itself
// (not to a multiplier of some base rate). The step index t = 0, 1, 2, ...
// is the index of the step about to be taken, i.e. the number of steps
// already taken; t = 0 is the first update. Negative t is treated as 0.
//
// Every schedule built by a constructor of this package is a deterministic,
// pure function of t that returns finite, non-negative values for all t,
// and that holds its final value once t is past its horizon. Schedules that
// compose other schedules (Warmup, WarmupThen, Join, Scale) inherit these
// properties from the schedules they are given.
//
// Horizon convention: a schedule with a horizon of T steps (LinearDecay,
// Cosine, WSD) reaches its final value at t = T, i.e. after T steps have been
// taken, exactly like torch's LinearLR, CosineAnnealingLR and optax's
// linear_schedule / cosine_decay_schedule. In a run of T updates (t = 0..T-1)
// the last update therefore still uses a (small) non-final rate, so no update
// is wasted on a zero learning rate.
//
// Warm-up convention: a linear warm-up over W steps uses the factor
// min(1, (t+1)/W), so the first update already uses lr/W (never 0) and the
// W-th update (t = W-1) is the first one at the full rate.
package schedule

import (
	"math"
	"sort"
	"strconv"

	"github.com/pkg/errors"
)

// Schedule gives the learning rate for step t, where t = 0,1,2,... is the
// index of the step about to be taken (t = number of steps already taken).
// It is the analogue of an optax schedule (a function of the step count) and
// replaces torch's stateful LRScheduler with a closed form.
type Schedule interface {
	At(t int) float64
}

// Func adapts an ordinary function to a Schedule, like a bare optax schedule
// function. Negative t is passed to f as 0. The caller is responsible for f
// being pure and returning finite, non-negative values.
type Func func(t int) float64

// At returns f(t), with negative t replaced by 0.
func (f Func) At(t int) float64 {
	if t < 0 {
		t = 0
	}
	return f(t)
}

// Must returns s, and panics if err is not nil. It is meant for wrapping
// constructors whose arguments are known to be valid, e.g. package-level
// variables, examples and tests.
func Must(s Schedule, err error) Schedule {
	if err != nil {
		panic(err)
	}
	return s
}

// Constant returns the schedule that is lr at every step
// (optax.constant_schedule; torch's default of no scheduler).
func Constant(lr float64) (Schedule, error) {
	if err := checkRate("lr", lr); err != nil {
		return nil, errors.Wrap(err, "schedule.Constant")
	}
	return Func(func(int) float64 { return lr }), nil
}

// Step returns lr·gamma^⌊t/stepSize⌋: the rate is multiplied by gamma every
// stepSize steps (torch.optim.lr_scheduler.StepLR). stepSize must be positive
// and gamma in (0, 1].
func Step(lr float64, stepSize int, gamma float64) (Schedule, error) {
	if err := checkRate("lr", lr); err != nil {
		return nil, errors.Wrap(err, "schedule.Step")
	}
	if stepSize <= 0 {
		return nil, errors.Errorf("schedule.Step: stepSize must be positive, got %d", stepSize)
	}
	if err := checkGamma(gamma); err != nil {
		return nil, errors.Wrap(err, "schedule.Step")
	}
	return Func(func(t int) float64 {
		return lr * math.Pow(gamma, float64(t/stepSize))
	}), nil
}

// MultiStep returns lr·gamma^k, where k is the number of milestones m with
// m ≤ t: the rate is multiplied by gamma when t reaches each milestone
// (torch.optim.lr_scheduler.MultiStepLR; optax.piecewise_constant_schedule
// with equal scales). Milestones must be positive and strictly increasing;
// none gives a constant schedule. gamma must be in (0, 1].
func MultiStep(lr float64, milestones []int, gamma float64) (Schedule, error) {
	if err := checkRate("lr", lr); err != nil {
		return nil, errors.Wrap(err, "schedule.MultiStep")
	}
	if err := checkBoundaries("milestones", milestones); err != nil {
		return nil, errors.Wrap(err, "schedule.MultiStep")
	}
	if err := checkGamma(gamma); err != nil {
		return nil, errors.Wrap(err, "schedule.MultiStep")
	}
	ms := append([]int(nil), milestones...)
	return Func(func(t int) float64 {
		k := countLE(ms, t)
		return lr * math.Pow(gamma, float64(k))
	}), nil
}

// Exponential returns lr·gamma^t (torch.optim.lr_scheduler.ExponentialLR;
// optax.exponential_decay with transition_steps 1). gamma must be in (0, 1].
func Exponential(lr, gamma float64) (Schedule, error) {
	if err := checkRate("lr", lr); err != nil {
		return nil, errors.Wrap(err, "schedule.Exponential")
	}
	if err := checkGamma(gamma); err != nil {
		return nil, errors.Wrap(err, "schedule.Exponential")
	}
	return Func(func(t int) float64 {
		return lr * math.Pow(gamma, float64(t))
	}), nil
}

// LinearDecay returns lr + (endLR − lr)·min(t, steps)/steps: a linear
// interpolation from lr at t = 0 to endLR at t = steps, held afterwards
// (optax.linear_schedule; torch LinearLR expressed in rates). With endLR = 0
// this is η0·(1 − t/T). endLR > lr gives a linear ramp up. steps must be
// positive.
func LinearDecay(lr, endLR float64, steps int) (Schedule, error) {
	if err := checkRate("lr", lr); err != nil {
		return nil, errors.Wrap(err, "schedule.LinearDecay")
	}
	if err := checkRate("endLR", endLR); err != nil {
		return nil, errors.Wrap(err, "schedule.LinearDecay")
	}
	if steps <= 0 {
		return nil, errors.Errorf("schedule.LinearDecay: steps must be positive, got %d", steps)
	}
	return Func(func(t int) float64 {
		return lerp(lr, endLR, progress(t, steps))
	}), nil
}

// Cosine returns minLR + ½(lr − minLR)(1 + cos(π·min(t, T)/T)) with T = steps:
// cosine annealing from lr at t = 0 to minLR at t = T, held afterwards.
// This is the closed form of torch.optim.lr_scheduler.CosineAnnealingLR and
// of SGDR (Loshchilov & Hutter, "SGDR: Stochastic Gradient Descent with Warm
// Restarts") without restarts; optax.cosine_decay_schedule with
// alpha = minLR/lr. Requires 0 ≤ minLR ≤ lr and steps > 0.
func Cosine(lr, minLR float64, steps int) (Schedule, error) {
	if err := checkRate("lr", lr); err != nil {
		return nil, errors.Wrap(err, "schedule.Cosine")
	}
	if err := checkMin(minLR, lr); err != nil {
		return nil, errors.Wrap(err, "schedule.Cosine")
	}
	if steps <= 0 {
		return nil, errors.Errorf("schedule.Cosine: steps must be positive, got %d", steps)
	}
	return Func(func(t int) float64 {
		return lerp(minLR, lr, cosineShape(progress(t, steps)))
	}), nil
}

// Warmup multiplies inner by a linear warm-up factor:
//
//	factor(t) = s + (1 − s)·min(1, (t+1)/W),  s = startFactor, W = warmupSteps,
//	rate(t)   = factor(t)·inner.At(t).
//
// So the first step uses (s + (1−s)/W)·inner.At(0), and from t = W−1 on the
// factor is 1. With startFactor 0 this is the usual "warm-up ×min(1, (t+1)/W)".
// It equals torch.optim.lr_scheduler.LinearLR(start_factor = s + (1−s)/W,
// total_iters = W−1) chained with inner.
//
// The warm-up multiplies, it does not shift: inner keeps counting from t = 0,
// so e.g. a Cosine of T steps still ends at t = T and its first W steps are
// both warmed up and decayed. Use WarmupThen to start inner only after the
// warm-up. warmupSteps must be ≥ 0 (0 returns inner unchanged) and startFactor
// in [0, 1].
func Warmup(inner Schedule, warmupSteps int, startFactor float64) (Schedule, error) {
	if err := checkSchedule("inner", inner); err != nil {
		return nil, errors.Wrap(err, "schedule.Warmup")
	}
	if warmupSteps < 0 {
		return nil, errors.Errorf("schedule.Warmup: warmupSteps must be non-negative, got %d", warmupSteps)
	}
	if !(startFactor >= 0 && startFactor <= 1) {
		return nil, errors.Errorf("schedule.Warmup: startFactor must be in [0, 1], got %v", startFactor)
	}
	if warmupSteps == 0 {
		return inner, nil
	}
	return Func(func(t int) float64 {
		return warmupFactor(t, warmupSteps, startFactor) * inner.At(t)
	}), nil
}

// WarmupThen returns a linear warm-up to peak followed by after, started
// afresh (optax.join_schedules of a linear warm-up and after, as in
// optax.warmup_cosine_decay_schedule):
//
//	rate(t) = peak·(t+1)/W   for t < W,
//	rate(t) = after.At(t−W)  for t ≥ W.
//
// Unlike Warmup, which multiplies a schedule that counts from t = 0,
// WarmupThen delays after by W steps, so a Cosine of T steps ends at
// t = W + T. Note that optax's own warm-up starts at 0 (peak·t/W); here the
// first step already uses peak/W and step W−1 uses peak. warmupSteps must be
// ≥ 0 (0 returns after unchanged).
func WarmupThen(warmupSteps int, peak float64, after Schedule) (Schedule, error) {
	if warmupSteps < 0 {
		return nil, errors.Errorf("schedule.WarmupThen: warmupSteps must be non-negative, got %d", warmupSteps)
	}
	if err := checkRate("peak", peak); err != nil {
		return nil, errors.Wrap(err, "schedule.WarmupThen")
	}
	if err := checkSchedule("after", after); err != nil {
		return nil, errors.Wrap(err, "schedule.WarmupThen")
	}
	if warmupSteps == 0 {
		return after, nil
	}
	ramp := Func(func(t int) float64 { return peak * warmupFactor(t, warmupSteps, 0) })
	s, err := Join([]Schedule{ramp, after}, []int{warmupSteps})
	return s, errors.Wrap(err, "schedule.WarmupThen")
}

// CooldownShape is the shape of the cooldown phase of a WSD schedule: a
// decreasing function f on u ∈ [0, 1] with f(0) = 1 and f(1) = 0.
type CooldownShape int

// Cooldown shapes studied by Hägele et al. (2024), "Scaling Laws and
// Compute-Optimal Training Beyond Fixed Training Durations".
const (
	Linear         CooldownShape = iota // f(u) = 1 − u
	OneMinusSqrt                        // f(u) = 1 − √u, the best-performing shape in Hägele et al.
	OneMinusSquare                      // f(u) = 1 − u²
	CosineShape                         // f(u) = ½(1 + cos πu)
)

// String returns the name of the shape.
func (c CooldownShape) String() string {
	switch c {
	case Linear:
		return "Linear"
	case OneMinusSqrt:
		return "OneMinusSqrt"
	case OneMinusSquare:
		return "OneMinusSquare"
	case CosineShape:
		return "CosineShape"
	}
	return "CooldownShape(" + strconv.Itoa(int(c)) + ")"
}

func (c CooldownShape) f(u float64) float64 {
	switch c {
	case OneMinusSqrt:
		return 1 - math.Sqrt(u)
	case OneMinusSquare:
		return 1 - u*u
	case CosineShape:
		return cosineShape(u)
	}
	return 1 - u
}

// WSD returns a warmup-stable-decay (trapezoidal) schedule, as in Hägele et
// al. (2024), "Scaling Laws and Compute-Optimal Training Beyond Fixed Training
// Durations", and Schaipp et al. (2025), "The Surprising Agreement Between
// Convex Optimization Theory and Learning-Rate Scheduling for Large Model
// Training". With T = totalSteps, W = warmupSteps and
// T_c = max(1, round(cooldownFraction·T)) cooldown steps:
//
//	rate(t) = lr·(t+1)/W                         for 0 ≤ t < W        (warm-up)
//	rate(t) = lr                                 for W ≤ t < T − T_c  (stable)
//	rate(t) = minLR + (lr − minLR)·shape(u),
//	          u = min(1, (t − T + T_c)/T_c)      for t ≥ T − T_c      (cooldown)
//
// So the first cooldown step t = T − T_c still uses lr (u = 0), the last step
// of the run t = T−1 uses minLR + (lr − minLR)·shape(1 − 1/T_c), and minLR is
// reached at t = T and held afterwards (see the package's horizon convention).
// Requires 0 ≤ minLR ≤ lr, T > 0, W ≥ 0, cooldownFraction ∈ (0, 1],
// W + T_c ≤ T (warm-up and cooldown must not overlap) and a known shape.
func WSD(lr float64, totalSteps, warmupSteps int, cooldownFraction float64, shape CooldownShape, minLR float64) (Schedule, error) {
	if err := checkRate("lr", lr); err != nil {
		return nil, errors.Wrap(err, "schedule.WSD")
	}
	if err := checkMin(minLR, lr); err != nil {
		return nil, errors.Wrap(err, "schedule.WSD")
	}
	if totalSteps <= 0 {
		return nil, errors.Errorf("schedule.WSD: totalSteps must be positive, got %d", totalSteps)
	}
	if warmupSteps < 0 {
		return nil, errors.Errorf("schedule.WSD: warmupSteps must be non-negative, got %d", warmupSteps)
	}
	if warmupSteps > totalSteps {
		return nil, errors.Errorf("schedule.WSD: warmupSteps (%d) exceeds totalSteps (%d)", warmupSteps, totalSteps)
	}
	if !(cooldownFraction > 0 && cooldownFraction <= 1) {
		return nil, errors.Errorf("schedule.WSD: cooldownFraction must be in (0, 1], got %v", cooldownFraction)
	}
	if shape < Linear || shape > CosineShape {
		return nil, errors.Errorf("schedule.WSD: unknown cooldown shape %v", shape)
	}
	tc := int(math.Round(cooldownFraction * float64(totalSteps)))
	if tc < 1 {
		tc = 1
	}
	start := totalSteps - tc
	if warmupSteps > start {
		return nil, errors.Errorf("schedule.WSD: warm-up (%d steps) and cooldown (%d steps) overlap within %d total steps",
			warmupSteps, tc, totalSteps)
	}
	return Func(func(t int) float64 {
		switch {
		case t < warmupSteps:
			return lr * warmupFactor(t, warmupSteps, 0)
		case t < start:
			return lr
		}
		return lerp(minLR, lr, shape.f(progress(t-start, tc)))
	}), nil
}

// Join concatenates schedules at the given boundaries, each later schedule
// counting from its boundary (optax.join_schedules):
//
//	rate(t) = schedules[0].At(t)                 for t < boundaries[0],
//	rate(t) = schedules[i].At(t − boundaries[i−1]) for boundaries[i−1] ≤ t < boundaries[i].
//
// It needs len(boundaries) = len(schedules) − 1, no nil schedule, and
// positive, strictly increasing boundaries.
func Join(schedules []Schedule, boundaries []int) (Schedule, error) {
	if len(schedules) == 0 {
		return nil, errors.New("schedule.Join: no schedules")
	}
	if len(boundaries) != len(schedules)-1 {
		return nil, errors.Errorf("schedule.Join: %d schedules need %d boundaries, got %d",
			len(schedules), len(schedules)-1, len(boundaries))
	}
	for i, s := range schedules {
		if err := checkSchedule("schedules["+strconv.Itoa(i)+"]", s); err != nil {
			return nil, errors.Wrap(err, "schedule.Join")
		}
	}
	if err := checkBoundaries("boundaries", boundaries); err != nil {
		return nil, errors.Wrap(err, "schedule.Join")
	}
	ss := append([]Schedule(nil), schedules...)
	bs := append([]int(nil), boundaries...)
	return Func(func(t int) float64 {
		i := countLE(bs, t)
		if i == 0 {
			return ss[0].At(t)
		}
		return ss[i].At(t - bs[i-1])
	}), nil
}

// Scale returns factor·s.At(t) (optax.scale applied to a schedule; torch's
// ConstantLR with total_iters = ∞). factor must be finite and non-negative.
func Scale(s Schedule, factor float64) (Schedule, error) {
	if err := checkSchedule("s", s); err != nil {
		return nil, errors.Wrap(err, "schedule.Scale")
	}
	if err := checkRate("factor", factor); err != nil {
		return nil, errors.Wrap(err, "schedule.Scale")
	}
	return Func(func(t int) float64 { return factor * s.At(t) }), nil
}

// progress returns min(t, n)/n for t ≥ 0 and n > 0.
func progress(t, n int) float64 {
	if t >= n {
		return 1
	}
	return float64(t) / float64(n)
}

// warmupFactor returns s + (1−s)·min(1, (t+1)/w) for t ≥ 0 and w > 0.
func warmupFactor(t, w int, s float64) float64 {
	if t >= w-1 { // also avoids overflowing t+1
		return 1
	}
	return lerp(s, 1, progress(t+1, w))
}

// countLE returns the number of elements ≤ t of the sorted slice xs.
func countLE(xs []int, t int) int {
	return sort.Search(len(xs), func(i int) bool { return xs[i] > t })
}

// cosineShape returns ½(1 + cos πu).
func cosineShape(u float64) float64 {
	return 0.5 * (1 + math.Cos(math.Pi*u))
}

// lerp returns a + (b − a)·p for p ∈ [0, 1], exactly a at p = 0 and exactly
// b at p = 1, clamped to the closed interval between a and b so that rounding
// can neither overshoot nor break monotonicity in p.
func lerp(a, b, p float64) float64 {
	if p >= 1 {
		return b
	}
	if p <= 0 {
		return a
	}
	v := a + (b-a)*p
	return math.Max(math.Min(a, b), math.Min(math.Max(a, b), v))
}

func checkRate(name string, v float64) error {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return errors.Errorf("%s must be finite, got %v", name, v)
	}
	if v < 0 {
		return errors.Errorf("%s must be non-negative, got %v", name, v)
	}
	return nil
}

func checkMin(minLR, lr float64) error {
	if err := checkRate("minLR", minLR); err != nil {
		return err
	}
	if minLR > lr {
		return errors.Errorf("minLR (%v) must not exceed lr (%v)", minLR, lr)
	}
	return nil
}

func checkGamma(gamma float64) error {
	if !(gamma > 0 && gamma <= 1) {
		return errors.Errorf("gamma must be in (0, 1], got %v", gamma)
	}
	return nil
}

func checkBoundaries(name string, bs []int) error {
	for i, b := range bs {
		if b <= 0 {
			return errors.Errorf("%s must be positive, got %s[%d] = %d", name, name, i, b)
		}
		if i > 0 && b <= bs[i-1] {
			return errors.Errorf("%s must be strictly increasing, got %s[%d] = %d after %d", name, name, i, b, bs[i-1])
		}
	}
	return nil
}

func checkSchedule(name string, s Schedule) error {
	if s == nil {
		return errors.Errorf("%s is nil", name)
	}
	if f, ok := s.(Func); ok && f == nil {
		return errors.Errorf("%s is a nil Func", name)
	}
	return nil
}
