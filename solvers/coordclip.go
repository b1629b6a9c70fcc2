package solvers

import (
	"math"
	"math/bits"
	"slices"

	"github.com/pkg/errors"
	G "gorgonia.org/gorgonia"
)

// CoordClip is coordinate-wise clipping of the largest gradient coordinates (Pan & Li, "Toward
// Understanding Why Adam Converges Faster Than SGD for Transformers", Algorithm 1 "SGD momentum with
// clipping"), as a wrapper around any solver: every gradient element is clamped to [−τ, τ] before the
// wrapped solver's step,
//
//	g_i ← clip(g_i, −τ, τ).
//
// The threshold is adaptive by default, as in the paper's clipping code (functions clip_top_coordinates /
// _get_top_coordinates_threshold / _clip_threshold, applied to the gradients of all parameters together
// before momentum; found in the code index without its repository name, so not cited by repository):
// with a = |g| sorted in descending order over N coordinates and p the clipping fraction,
// τ = threshold_scale·a[⌊N·p⌋], i.e. the (1−p) quantile, so the top p fraction of coordinates is clipped.
// A fixed threshold ("threshold" > 0) replaces the quantile when set (the reference's clip_threshold).
// The quantile is found by an in-place selection (three-way quickselect, O(N), sort fallback after
// 2·log₂N rounds) on a scratch buffer grown once, so a step does not allocate.
//
// Hyperparameters: fraction (p, 0.1; in [0, 1), 0 disables clipping; the paper uses a larger fraction for
// SGD than for adaptive methods, REFERENCE §1.6 gives 1–10%), threshold (0 = adaptive; > 0 fixed τ),
// threshold_scale (1, > 0, multiplies the adaptive threshold), per_tensor (off: one threshold over all
// parameters of the step, as the reference; on: a quantile per tensor). A non-finite gradient is passed
// on unclipped, so the wrapped solver's non-finite policy applies.
type CoordClip struct {
	wrapper
	cfg       *config
	frac      float64
	fixed     float64
	tauScale  float64
	perTensor bool
	steps     int64
	lastTau   float64
	scratch   []float64 // |g| for the selection, grown once
}

// NewCoordClip wraps inner with coordinate-wise clipping; hyperparameters "fraction", "threshold",
// "threshold_scale", "per_tensor".
func NewCoordClip(inner Solver, opts ...Option) (*CoordClip, error) {
	if inner == nil {
		return nil, errors.New("coord_clip: nil inner solver")
	}
	c, err := newConfig("coord_clip", []hyperSpec{
		{key: "fraction", def: 0.1, check: unitInterval},
		{key: "threshold", def: 0, check: nonNegative},
		{key: "threshold_scale", def: 1, check: positive},
		flagSpec("per_tensor", false),
	}, opts)
	if err != nil {
		return nil, err
	}
	cc := &CoordClip{wrapper: wrapper{inner: inner}, cfg: c}
	cc.applyConfig()
	return cc, nil
}

func (c *CoordClip) applyConfig() {
	c.frac, c.fixed, c.tauScale = c.cfg.f("fraction"), c.cfg.f("threshold"), c.cfg.f("threshold_scale")
	c.perTensor = c.cfg.b("per_tensor")
}

// Kind returns "coord_clip(<inner>)".
func (c *CoordClip) Kind() string { return "coord_clip(" + c.inner.Kind() + ")" }

// StateBytes returns the wrapped solver's state size (the selection scratch is not state).
func (c *CoordClip) StateBytes() int64 { return c.inner.StateBytes() }

// LastThreshold returns the threshold τ used at the last step (with per_tensor, the last tensor's); +Inf
// when nothing was clipped because the fraction is 0.
func (c *CoordClip) LastThreshold() float64 { return c.lastTau }

// Step clips the gradients and steps the wrapped solver.
func (c *CoordClip) Step(params []G.ValueGrad) error {
	views, err := c.views.resolve(params)
	if err != nil {
		return errors.Wrap(err, "coord_clip")
	}
	if err := c.validate(params); err != nil {
		return err
	}
	for i := range views {
		if !views[i].gradFinite() {
			// Not clipped: the wrapped solver applies its non-finite policy (refuse by default).
			return c.inner.Step(params)
		}
	}
	switch {
	case c.fixed > 0:
		c.lastTau = c.fixed
		for i := range views {
			coordClamp(&views[i], c.fixed)
		}
	case c.frac == 0:
		c.lastTau = math.Inf(1)
	case c.perTensor:
		for i := range views {
			c.lastTau = c.threshold(views[i : i+1])
			coordClamp(&views[i], c.lastTau)
		}
	default:
		c.lastTau = c.threshold(views)
		for i := range views {
			coordClamp(&views[i], c.lastTau)
		}
	}
	if err := c.inner.Step(params); err != nil {
		return err
	}
	c.steps++
	return nil
}

// threshold returns threshold_scale times the element of rank ⌊N·p⌋ (0 = largest) of |g| over views.
func (c *CoordClip) threshold(views []view) float64 {
	n := 0
	for i := range views {
		n += views[i].size()
	}
	if cap(c.scratch) < n {
		c.scratch = make([]float64, n)
	}
	a := c.scratch[:n]
	off := 0
	for i := range views {
		v := &views[i]
		if v.g32 != nil {
			off += coordAbsInto(a[off:], v.g32)
		} else {
			off += coordAbsInto(a[off:], v.g64)
		}
	}
	if n == 0 {
		return math.Inf(1)
	}
	rank := int(float64(n) * c.frac) // rank in descending order, as the reference's sorted index
	return coordSelect(a, n-1-rank) * c.tauScale
}

func coordAbsInto[T Float](dst []float64, x []T) int {
	for i, e := range x {
		dst[i] = math.Abs(float64(e))
	}
	return len(x)
}

func coordClamp(v *view, tau float64) {
	if v.g32 != nil {
		// τ is an element's magnitude (exact in float32) unless scaled or fixed; rounding it keeps the
		// clamp in the gradient's precision.
		clamp(v.g32, float32(tau))
	} else {
		clamp(v.g64, tau)
	}
}

// coordSelect returns the k-th smallest element (0-based) of a, reordering a in place: a three-way
// quickselect with median-of-three pivots, falling back to sorting the remaining range after
// 2·log₂(len a) rounds so the worst case stays O(N log N). a must hold no NaN. It does not allocate.
func coordSelect(a []float64, k int) float64 {
	lo, hi := 0, len(a)-1
	budget := 2*bits.Len(uint(len(a))) + 4
	for lo < hi {
		if budget == 0 {
			slices.Sort(a[lo : hi+1])
			return a[k]
		}
		budget--
		mid := lo + (hi-lo)/2
		x, y, z := a[lo], a[mid], a[hi]
		pivot := max(min(x, y), min(max(x, y), z)) // median of three
		lt, i, gt := lo, lo, hi
		for i <= gt {
			switch e := a[i]; {
			case e < pivot:
				a[lt], a[i] = a[i], a[lt]
				lt++
				i++
			case e > pivot:
				a[i], a[gt] = a[gt], a[i]
				gt--
			default:
				i++
			}
		}
		// a[lo:lt] < pivot, a[lt:gt+1] == pivot, a[gt+1:hi+1] > pivot.
		switch {
		case k < lt:
			hi = lt - 1
		case k > gt:
			lo = gt + 1
		default:
			return pivot
		}
	}
	return a[k]
}

func (c *CoordClip) saveState(prefix string, w *stateWriter) error {
	if err := saveConfig(prefix, c.cfg, c.steps, w); err != nil {
		return err
	}
	return c.saveInner(prefix, w)
}

func (c *CoordClip) loadState(prefix string, r *stateReader) (func(), error) {
	cfg, steps, err := loadConfig(prefix, c.cfg, r)
	if err != nil {
		return nil, err
	}
	commitInner, err := c.loadInner(prefix, r)
	if err != nil {
		return nil, err
	}
	return func() {
		*c.cfg = *cfg
		c.applyConfig()
		c.steps = steps
		commitInner()
	}, nil
}
