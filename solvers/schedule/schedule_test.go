package schedule

import (
	"math"
	"strings"
	"testing"
)

// approx reports whether got and want agree within tol, relative to
// max(1, |want|).
func approx(got, want, tol float64) bool {
	return math.Abs(got-want) <= tol*math.Max(1, math.Abs(want))
}

// mk returns a function that unwraps a constructor's result, failing t on
// error: mk(t)(Cosine(1, 0, 4)).
func mk(t *testing.T) func(Schedule, error) Schedule {
	return func(s Schedule, err error) Schedule {
		t.Helper()
		if err != nil {
			t.Fatalf("unexpected error: %v", err)
		}
		return s
	}
}

// checkValues compares s.At(t) with want[t] for t = 0..len(want)-1.
func checkValues(t *testing.T, name string, s Schedule, want []float64, tol float64) {
	t.Helper()
	for i, w := range want {
		if got := s.At(i); !approx(got, w, tol) {
			t.Errorf("%s: At(%d) = %.17g, want %.17g", name, i, got, w)
		}
	}
}

// Independent references: torch's chainable (recursive) get_lr forms, where
// lr_e is computed from lr_{e-1} (torch/optim/lr_scheduler.py).

func torchStepLR(lr float64, stepSize int, gamma float64, n int) []float64 {
	out := make([]float64, n)
	for e := 0; e < n; e++ {
		if e > 0 && e%stepSize == 0 {
			lr *= gamma
		}
		out[e] = lr
	}
	return out
}

func torchMultiStepLR(lr float64, milestones []int, gamma float64, n int) []float64 {
	count := map[int]int{}
	for _, m := range milestones {
		count[m]++
	}
	out := make([]float64, n)
	for e := 0; e < n; e++ {
		if e > 0 {
			for k := 0; k < count[e]; k++ {
				lr *= gamma
			}
		}
		out[e] = lr
	}
	return out
}

func torchExponentialLR(lr, gamma float64, n int) []float64 {
	out := make([]float64, n)
	for e := 0; e < n; e++ {
		if e > 0 {
			lr *= gamma
		}
		out[e] = lr
	}
	return out
}

// torchCosineAnnealingLR is the recursive form, valid for e in [0, T].
func torchCosineAnnealingLR(base, etaMin float64, tMax, n int) []float64 {
	out := make([]float64, n)
	lr := base
	for e := 0; e < n; e++ {
		switch {
		case e == 0:
			lr = base
		case (e-1-tMax)%(2*tMax) == 0:
			lr += (base - etaMin) * (1 - math.Cos(math.Pi/float64(tMax))) / 2
		default:
			lr = (1+math.Cos(math.Pi*float64(e)/float64(tMax)))/
				(1+math.Cos(math.Pi*float64(e-1)/float64(tMax)))*(lr-etaMin) + etaMin
		}
		out[e] = lr
	}
	return out
}

// torchLinearLR is the recursive form of LinearLR(start, end, total) applied
// to base; total ≥ 1.
func torchLinearLR(base, start, end float64, total, n int) []float64 {
	out := make([]float64, n)
	lr := base
	for e := 0; e < n; e++ {
		switch {
		case e == 0:
			lr = base * start
		case e <= total:
			lr *= 1 + (end-start)/(float64(total)*start+float64(e-1)*(end-start))
		}
		out[e] = lr
	}
	return out
}

func TestConstant(t *testing.T) {
	s := mk(t)(Constant(0.1))
	for _, x := range []int{-3, 0, 1, 1000, math.MaxInt} {
		if got := s.At(x); got != 0.1 {
			t.Errorf("At(%d) = %v, want 0.1", x, got)
		}
	}
}

func TestStep(t *testing.T) {
	for _, c := range []struct {
		lr    float64
		size  int
		gamma float64
	}{{0.1, 3, 0.5}, {1, 1, 0.9}, {0.05, 7, 1}, {2, 30, 0.1}} {
		s := mk(t)(Step(c.lr, c.size, c.gamma))
		checkValues(t, "Step", s, torchStepLR(c.lr, c.size, c.gamma, 100), 1e-12)
	}
	s := mk(t)(Step(1, 2, 0.5))
	checkValues(t, "Step(1,2,0.5)", s, []float64{1, 1, 0.5, 0.5, 0.25, 0.25, 0.125}, 0)
}

func TestMultiStep(t *testing.T) {
	ms := []int{2, 5, 6}
	s := mk(t)(MultiStep(1, ms, 0.1))
	checkValues(t, "MultiStep", s, []float64{1, 1, 0.1, 0.1, 0.1, 0.01, 0.001, 0.001, 0.001}, 1e-15)
	checkValues(t, "MultiStep/torch", s, torchMultiStepLR(1, ms, 0.1, 50), 1e-12)
	ms[0] = 100 // the schedule keeps its own copy
	if got := s.At(2); !approx(got, 0.1, 1e-15) {
		t.Errorf("MultiStep aliases its milestones: At(2) = %v", got)
	}
	c := mk(t)(MultiStep(0.3, nil, 0.5))
	if c.At(0) != 0.3 || c.At(1e6) != 0.3 {
		t.Errorf("MultiStep without milestones is not constant")
	}
}

func TestExponential(t *testing.T) {
	s := mk(t)(Exponential(0.5, 0.95))
	checkValues(t, "Exponential", s, torchExponentialLR(0.5, 0.95, 200), 1e-12)
	if got := s.At(math.MaxInt32); got != 0 || math.IsNaN(got) {
		t.Errorf("Exponential far out = %v, want 0", got)
	}
}

func TestLinearDecay(t *testing.T) {
	s := mk(t)(LinearDecay(1, 0, 4))
	checkValues(t, "LinearDecay", s, []float64{1, 0.75, 0.5, 0.25, 0, 0, 0}, 1e-15)

	// torch LinearLR(start_factor=1, end_factor=endLR/lr, total_iters=T).
	const lr, end, T = 0.3, 0.03, 17
	s = mk(t)(LinearDecay(lr, end, T))
	checkValues(t, "LinearDecay/torch", s, torchLinearLR(lr, 1, end/lr, T, 3*T), 1e-12)
	if s.At(T) != end || s.At(10*T) != end {
		t.Errorf("LinearDecay does not hold endLR: At(T) = %v, At(10T) = %v", s.At(T), s.At(10*T))
	}

	up := mk(t)(LinearDecay(0, 1, 2))
	checkValues(t, "LinearDecay up", up, []float64{0, 0.5, 1, 1}, 0)
}

func TestCosine(t *testing.T) {
	s := mk(t)(Cosine(1, 0, 4))
	checkValues(t, "Cosine", s, []float64{1, 0.8535533905932737, 0.5, 0.14644660940672627, 0, 0}, 1e-15)

	for _, c := range []struct {
		lr, min float64
		T       int
	}{{0.1, 0, 100}, {0.1, 1e-3, 100}, {3e-4, 3e-5, 1000}, {1, 0.5, 1}, {0.2, 0.2, 10}} {
		s := mk(t)(Cosine(c.lr, c.min, c.T))
		ref := torchCosineAnnealingLR(c.lr, c.min, c.T, c.T+1)
		for i, w := range ref {
			if got := s.At(i); math.Abs(got-w) > 1e-12 {
				t.Errorf("Cosine(%v,%v,%d).At(%d) = %.17g, torch recursive %.17g", c.lr, c.min, c.T, i, got, w)
			}
		}
		// Boundaries: exact at t = 0 and t ≥ T.
		if s.At(0) != c.lr {
			t.Errorf("Cosine.At(0) = %v, want %v", s.At(0), c.lr)
		}
		for _, x := range []int{c.T, c.T + 1, 100 * c.T, math.MaxInt} {
			if s.At(x) != c.min {
				t.Errorf("Cosine.At(%d) = %v, want minLR %v", x, s.At(x), c.min)
			}
		}
		if c.T > 1 && !(s.At(c.T-1) > c.min || c.lr == c.min) {
			t.Errorf("Cosine.At(T-1) = %v, want > minLR", s.At(c.T-1))
		}
	}
}

func TestWarmup(t *testing.T) {
	c := mk(t)(Constant(2))
	s := mk(t)(Warmup(c, 4, 0))
	checkValues(t, "Warmup", s, []float64{0.5, 1, 1.5, 2, 2, 2}, 0)

	// factor s + (1-s)(t+1)/W equals torch LinearLR(s+(1-s)/W, 1, W-1).
	for _, sf := range []float64{0, 0.1, 0.5, 1} {
		for _, w := range []int{2, 5, 37} {
			s := mk(t)(Warmup(c, w, sf))
			ref := torchLinearLR(2, sf+(1-sf)/float64(w), 1, w-1, 3*w)
			checkValues(t, "Warmup/torch LinearLR", s, ref, 1e-12)
			if s.At(w-1) != 2 {
				t.Errorf("Warmup(W=%d, s=%v).At(W-1) = %v, want peak 2", w, sf, s.At(w-1))
			}
		}
	}

	// Multiplies, does not shift: inner still counts from 0.
	cos := mk(t)(Cosine(1, 0, 10))
	s = mk(t)(Warmup(cos, 3, 0))
	for x := 0; x < 20; x++ {
		want := math.Min(1, float64(x+1)/3) * cos.At(x)
		if got := s.At(x); got != want {
			t.Errorf("Warmup(cosine).At(%d) = %v, want %v", x, got, want)
		}
	}
	if s.At(10) != 0 {
		t.Errorf("Warmup(cosine) should end at t = T")
	}

	if same := mk(t)(Warmup(cos, 0, 0)); same.At(3) != cos.At(3) {
		t.Errorf("Warmup with 0 steps changed the schedule")
	}
}

func TestWarmupThen(t *testing.T) {
	cos := mk(t)(Cosine(1, 0, 4))
	s := mk(t)(WarmupThen(2, 1, cos))
	want := []float64{0.5, 1, 1, 0.8535533905932737, 0.5, 0.14644660940672627, 0, 0, 0}
	checkValues(t, "WarmupThen", s, want, 1e-15)
	if s.At(-1) != 0.5 {
		t.Errorf("WarmupThen.At(-1) = %v, want At(0)", s.At(-1))
	}
}

func TestWSD(t *testing.T) {
	// T = 10, W = 2, T_c = round(0.3·10) = 3: cooldown starts at t = 7 with
	// u = 0, 1/3, 2/3 at t = 7, 8, 9 and u = 1 (minLR) from t = 10 on.
	stable := []float64{0.5, 1, 1, 1, 1, 1, 1, 1}
	for _, c := range []struct {
		shape CooldownShape
		tail  []float64 // t = 8, 9, 10, 11
	}{
		{Linear, []float64{2.0 / 3, 1.0 / 3, 0, 0}},
		{OneMinusSqrt, []float64{0.42264973081037427, 0.18350341907227397, 0, 0}},
		{OneMinusSquare, []float64{8.0 / 9, 5.0 / 9, 0, 0}},
		{CosineShape, []float64{0.75, 0.25, 0, 0}},
	} {
		s := mk(t)(WSD(1, 10, 2, 0.3, c.shape, 0))
		checkValues(t, "WSD "+c.shape.String(), s, append(append([]float64(nil), stable...), c.tail...), 1e-15)
	}

	// With minLR: rate = minLR + (lr-minLR)·shape(u).
	const lr, minLR, T = 0.01, 0.001, 1000
	for _, shape := range []CooldownShape{Linear, OneMinusSqrt, OneMinusSquare, CosineShape} {
		s := mk(t)(WSD(lr, T, 50, 0.2, shape, minLR))
		tc := 200
		start := T - tc
		if got := s.At(start - 1); got != lr {
			t.Errorf("%v: just before cooldown At(%d) = %v, want lr", shape, start-1, got)
		}
		if got := s.At(start); got != lr {
			t.Errorf("%v: first cooldown step At(%d) = %v, want lr (u = 0)", shape, start, got)
		}
		u := float64(tc-1) / float64(tc)
		f := map[CooldownShape]float64{
			Linear:         1 - u,
			OneMinusSqrt:   1 - math.Sqrt(u),
			OneMinusSquare: 1 - u*u,
			CosineShape:    (1 + math.Cos(math.Pi*u)) / 2,
		}[shape]
		if got, want := s.At(T-1), minLR+(lr-minLR)*f; !approx(got, want, 1e-12) || got <= minLR {
			t.Errorf("%v: last step At(T-1) = %v, want %v (> minLR)", shape, got, want)
		}
		for _, x := range []int{T, T + 1, 10 * T, math.MaxInt} {
			if got := s.At(x); got != minLR {
				t.Errorf("%v: At(%d) = %v, want minLR", shape, x, got)
			}
		}
		if got := s.At(0); got != lr/50 {
			t.Errorf("%v: At(0) = %v, want lr/W", shape, got)
		}
		if got := s.At(49); got != lr {
			t.Errorf("%v: At(W-1) = %v, want lr", shape, got)
		}
		checkMonotone(t, "WSD cooldown "+shape.String(), s, 49, 2*T, -1)
		checkMonotone(t, "WSD warm-up "+shape.String(), s, 0, 49, +1)
	}

	// Tiny fraction still gives a one-step cooldown; warm-up may end where the
	// cooldown starts; fraction 1 with no warm-up is a pure decay from t = 0.
	s := mk(t)(WSD(1, 10, 0, 0.01, Linear, 0))
	checkValues(t, "WSD T_c=1", s, []float64{1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0}, 0)
	s = mk(t)(WSD(1, 4, 2, 0.5, Linear, 0))
	checkValues(t, "WSD W+T_c=T", s, []float64{0.5, 1, 1, 0.5, 0}, 0)
	s = mk(t)(WSD(1, 4, 0, 1, Linear, 0))
	checkValues(t, "WSD pure decay", s, []float64{1, 0.75, 0.5, 0.25, 0}, 0)
}

func TestJoin(t *testing.T) {
	a := mk(t)(Constant(1))
	b := mk(t)(LinearDecay(0.5, 0, 2))
	c := Func(func(x int) float64 { return 10 + float64(x) })
	s := mk(t)(Join([]Schedule{a, b, c}, []int{2, 5}))
	checkValues(t, "Join", s, []float64{1, 1, 0.5, 0.25, 0, 10, 11, 12}, 0)
	if s.At(-4) != 1 {
		t.Errorf("Join.At(-4) = %v, want 1", s.At(-4))
	}
	single := mk(t)(Join([]Schedule{b}, nil))
	if single.At(1) != 0.25 {
		t.Errorf("Join of one schedule changed it")
	}
}

func TestScale(t *testing.T) {
	b := mk(t)(LinearDecay(1, 0, 4))
	s := mk(t)(Scale(b, 0.5))
	checkValues(t, "Scale", s, []float64{0.5, 0.375, 0.25, 0.125, 0, 0}, 0)
}

func TestFuncNegative(t *testing.T) {
	var seen []int
	f := Func(func(x int) float64 { seen = append(seen, x); return 1 })
	f.At(-7)
	f.At(3)
	if len(seen) != 2 || seen[0] != 0 || seen[1] != 3 {
		t.Errorf("Func saw %v, want [0 3]", seen)
	}
}

// checkMonotone checks that s is non-increasing (dir -1) or non-decreasing
// (dir +1) on [from, to].
func checkMonotone(t *testing.T, name string, s Schedule, from, to, dir int) {
	t.Helper()
	prev := s.At(from)
	for x := from + 1; x <= to; x++ {
		v := s.At(x)
		if (dir < 0 && v > prev) || (dir > 0 && v < prev) {
			t.Errorf("%s: not monotone at t = %d: %.17g after %.17g", name, x, v, prev)
			return
		}
		prev = v
	}
}

// TestProperties checks, for every constructor, that values are finite and
// non-negative, negative t behaves as 0, the final value is held beyond the
// horizon, and decays are monotone.
func TestProperties(t *testing.T) {
	const T = 300
	cos := Must(Cosine(0.1, 1e-4, T))
	cases := []struct {
		name     string
		s        Schedule
		decaying bool
		horizon  int // -1: no horizon
	}{
		{"Constant", Must(Constant(0.1)), true, 0},
		{"Step", Must(Step(0.1, 7, 0.3)), true, -1},
		{"MultiStep", Must(MultiStep(0.1, []int{10, 20, 250}, 0.5)), true, 250},
		{"Exponential", Must(Exponential(0.1, 0.9)), true, -1},
		{"LinearDecay", Must(LinearDecay(0.1, 0, T)), true, T},
		{"LinearDecay/end", Must(LinearDecay(0.1, 0.01, T)), true, T},
		{"Cosine", cos, true, T},
		{"Cosine/hard", Must(Cosine(1e-3, 1e-3*(1-1e-15), 7)), true, 7},
		{"Warmup", Must(Warmup(cos, 20, 0.1)), false, T},
		{"WarmupThen", Must(WarmupThen(20, 0.1, cos)), false, T + 20},
		{"WSD/Linear", Must(WSD(0.1, T, 10, 0.2, Linear, 0)), false, T},
		{"WSD/Sqrt", Must(WSD(0.1, T, 10, 0.2, OneMinusSqrt, 1e-3)), false, T},
		{"WSD/Square", Must(WSD(0.1, T, 10, 0.2, OneMinusSquare, 0)), false, T},
		{"WSD/Cosine", Must(WSD(0.3, T, 0, 1, CosineShape, 0.1)), true, T},
		{"Join", Must(Join([]Schedule{cos, Must(Constant(0))}, []int{T})), true, T},
		{"Scale", Must(Scale(cos, 3)), true, T},
	}
	for _, c := range cases {
		for x := 0; x <= 3*T; x++ {
			v := c.s.At(x)
			if math.IsNaN(v) || math.IsInf(v, 0) || v < 0 {
				t.Fatalf("%s: At(%d) = %v", c.name, x, v)
			}
		}
		for _, x := range []int{-1, -100, math.MinInt} {
			if c.s.At(x) != c.s.At(0) {
				t.Errorf("%s: At(%d) = %v != At(0) = %v", c.name, x, c.s.At(x), c.s.At(0))
			}
		}
		if c.horizon >= 0 {
			final := c.s.At(c.horizon)
			for _, x := range []int{c.horizon + 1, 2*c.horizon + 1, 1 << 40, math.MaxInt} {
				if c.s.At(x) != final {
					t.Errorf("%s: At(%d) = %v, want final value %v", c.name, x, c.s.At(x), final)
				}
			}
		}
		if c.decaying {
			checkMonotone(t, c.name, c.s, 0, 3*T, -1)
		}
	}
}

func TestValidation(t *testing.T) {
	nan, inf := math.NaN(), math.Inf(1)
	ok := Must(Constant(1))
	var nilFunc Func
	cases := []struct {
		name string
		err  error
		want string
	}{
		{"Constant negative", second(Constant(-1)), "lr must be non-negative"},
		{"Constant NaN", second(Constant(nan)), "lr must be finite"},
		{"Constant Inf", second(Constant(inf)), "lr must be finite"},
		{"Step lr", second(Step(-0.1, 1, 0.5)), "schedule.Step: lr must be non-negative"},
		{"Step size", second(Step(0.1, 0, 0.5)), "stepSize must be positive"},
		{"Step gamma 0", second(Step(0.1, 1, 0)), "gamma must be in (0, 1]"},
		{"Step gamma >1", second(Step(0.1, 1, 1.5)), "gamma must be in (0, 1]"},
		{"Step gamma NaN", second(Step(0.1, 1, nan)), "gamma must be in (0, 1]"},
		{"MultiStep lr", second(MultiStep(inf, []int{1}, 0.5)), "schedule.MultiStep: lr must be finite"},
		{"MultiStep unsorted", second(MultiStep(0.1, []int{5, 3}, 0.5)), "strictly increasing"},
		{"MultiStep duplicate", second(MultiStep(0.1, []int{3, 3}, 0.5)), "strictly increasing"},
		{"MultiStep zero", second(MultiStep(0.1, []int{0, 3}, 0.5)), "milestones must be positive"},
		{"MultiStep gamma", second(MultiStep(0.1, []int{3}, -1)), "gamma must be in (0, 1]"},
		{"Exponential lr", second(Exponential(nan, 0.9)), "schedule.Exponential: lr must be finite"},
		{"Exponential gamma", second(Exponential(0.1, 2)), "gamma must be in (0, 1]"},
		{"LinearDecay lr", second(LinearDecay(-1, 0, 10)), "lr must be non-negative"},
		{"LinearDecay endLR", second(LinearDecay(1, -1, 10)), "endLR must be non-negative"},
		{"LinearDecay steps", second(LinearDecay(1, 0, 0)), "steps must be positive"},
		{"Cosine lr", second(Cosine(inf, 0, 10)), "schedule.Cosine: lr must be finite"},
		{"Cosine minLR negative", second(Cosine(1, -0.1, 10)), "minLR must be non-negative"},
		{"Cosine minLR > lr", second(Cosine(1, 2, 10)), "minLR (2) must not exceed lr (1)"},
		{"Cosine steps", second(Cosine(1, 0, -5)), "steps must be positive"},
		{"Warmup nil", second(Warmup(nil, 5, 0)), "inner is nil"},
		{"Warmup nil Func", second(Warmup(nilFunc, 5, 0)), "inner is a nil Func"},
		{"Warmup steps", second(Warmup(ok, -1, 0)), "warmupSteps must be non-negative"},
		{"Warmup factor", second(Warmup(ok, 5, 1.5)), "startFactor must be in [0, 1]"},
		{"Warmup factor NaN", second(Warmup(ok, 5, nan)), "startFactor must be in [0, 1]"},
		{"WarmupThen steps", second(WarmupThen(-1, 1, ok)), "warmupSteps must be non-negative"},
		{"WarmupThen peak", second(WarmupThen(5, nan, ok)), "peak must be finite"},
		{"WarmupThen nil", second(WarmupThen(5, 1, nil)), "after is nil"},
		{"WSD lr", second(WSD(-1, 100, 0, 0.1, Linear, 0)), "schedule.WSD: lr must be non-negative"},
		{"WSD minLR", second(WSD(1, 100, 0, 0.1, Linear, 2)), "minLR (2) must not exceed lr (1)"},
		{"WSD total", second(WSD(1, 0, 0, 0.1, Linear, 0)), "totalSteps must be positive"},
		{"WSD warmup negative", second(WSD(1, 100, -1, 0.1, Linear, 0)), "warmupSteps must be non-negative"},
		{"WSD warmup > total", second(WSD(1, 100, 101, 0.1, Linear, 0)), "warmupSteps (101) exceeds totalSteps (100)"},
		{"WSD overlap", second(WSD(1, 100, 95, 0.1, Linear, 0)), "warm-up (95 steps) and cooldown (10 steps) overlap"},
		{"WSD fraction 0", second(WSD(1, 100, 0, 0, Linear, 0)), "cooldownFraction must be in (0, 1]"},
		{"WSD fraction >1", second(WSD(1, 100, 0, 1.1, Linear, 0)), "cooldownFraction must be in (0, 1]"},
		{"WSD fraction NaN", second(WSD(1, 100, 0, nan, Linear, 0)), "cooldownFraction must be in (0, 1]"},
		{"WSD shape", second(WSD(1, 100, 0, 0.1, CooldownShape(9), 0)), "unknown cooldown shape CooldownShape(9)"},
		{"Join empty", second(Join(nil, nil)), "no schedules"},
		{"Join count", second(Join([]Schedule{ok, ok}, []int{1, 2})), "2 schedules need 1 boundaries, got 2"},
		{"Join nil", second(Join([]Schedule{ok, nil}, []int{1})), "schedules[1] is nil"},
		{"Join order", second(Join([]Schedule{ok, ok, ok}, []int{4, 4})), "boundaries must be strictly increasing"},
		{"Join zero", second(Join([]Schedule{ok, ok}, []int{0})), "boundaries must be positive"},
		{"Scale nil", second(Scale(nil, 2)), "s is nil"},
		{"Scale factor", second(Scale(ok, -2)), "factor must be non-negative"},
		{"Scale factor Inf", second(Scale(ok, inf)), "factor must be finite"},
	}
	for _, c := range cases {
		if c.err == nil {
			t.Errorf("%s: no error", c.name)
			continue
		}
		msg := c.err.Error()
		if !strings.Contains(msg, c.want) || !strings.HasPrefix(msg, "schedule.") {
			t.Errorf("%s: error %q, want it to start with \"schedule.\" and contain %q", c.name, msg, c.want)
		}
	}
}

func second(_ Schedule, err error) error { return err }

func TestMust(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Errorf("Must did not panic on error")
		}
	}()
	Must(Constant(-1))
}

func TestCooldownShapeString(t *testing.T) {
	for c, want := range map[CooldownShape]string{
		Linear: "Linear", OneMinusSqrt: "OneMinusSqrt", OneMinusSquare: "OneMinusSquare",
		CosineShape: "CosineShape", -1: "CooldownShape(-1)",
	} {
		if got := c.String(); got != want {
			t.Errorf("String() = %q, want %q", got, want)
		}
	}
}
