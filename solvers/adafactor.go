package solvers

import (
	"math"

	"github.com/pkg/errors"
	"gorgonia.org/tensor"
)

// NewAdafactor returns Adafactor (Shazeer & Stern, "Adafactor: Adaptive Learning Rates with Sublinear
// Memory Cost", Algorithms 4 and 5) as the fairseq implementation (facebookresearch/fairseq,
// fairseq/optim/adafactor.py; HF transformers' Adafactor is the same code). Per parameter, at its step t:
//
//	ρ_t = min(1e-2, 1/√t) (relative_step; warmup_init: min(1e-6·t, 1/√t)), or the given lr
//	α_t = max(eps2, RMS(p))·ρ_t (scale_parameter) or ρ_t;   β̂2 = 1 − t^decay_rate
//	matrices and higher (factored over the last two axes, the leading axes are a batch):
//	  R ← β̂2·R + (1−β̂2)·mean_cols(g² + eps1);  C ← β̂2·C + (1−β̂2)·mean_rows(g² + eps1)
//	  u = g / √(R·C / mean(R))
//	vectors and scalars: v ← β̂2·v + (1−β̂2)(g² + eps1);  u = g/√v
//	u ← u / max(1, RMS(u)/clip_threshold);  u ← α_t·u
//	optional momentum (beta1 > 0): m ← β1·m + (1−β1)·u;  u = m
//	p ← p − wd·α_t·p;  p ← p − u
//
// Hyperparameters (defaults, fairseq's): lr (0: none; required when relative_step is off, and refused
// with relative_step on, as the reference does), eps1 (1e-30), eps2 (1e-3), clip_threshold (1),
// decay_rate (−0.8), beta1 (0: no first moment, the reference's None), weight_decay (0),
// scale_parameter (true), relative_step (true), warmup_init (false; requires relative_step). With
// relative_step on, SetLR and schedules have no effect on the step size.
//
// The factored statistics R and C (and v for vectors) are kept in float64 whatever the parameter dtype,
// in the state's per-parameter scalars ("scalars" in the state file) because they are not
// parameter-shaped; the update itself is computed in float64 and rounded once. Layout does not matter:
// both row and column statistics are kept, so a (in, out) gradlab matrix factors as its PyTorch transpose.
func NewAdafactor(opts ...Option) (*Optimizer, error) {
	return newOptimizer("adafactor", []hyperSpec{
		lrSpec(0),
		{key: "eps1", def: 1e-30, check: nonNegative},
		{key: "eps2", def: 1e-3, check: nonNegative},
		{key: "clip_threshold", def: 1, check: positive},
		{key: "decay_rate", def: -0.8, check: adafactorDecayRate},
		betaSpec("beta1", 0),
		wdSpec(0),
		flagSpec("scale_parameter", true),
		flagSpec("relative_step", true),
		flagSpec("warmup_init", false),
	}, opts)
}

func adafactorDecayRate(v float64) error {
	if v > 0 {
		return errors.New("must be <= 0 (β̂2 = 1 − t^decay_rate)")
	}
	return nil
}

type adafactorRule struct {
	eps1, eps2, clip, decay, beta1 float64
	scaleParam, relStep, warmup    bool
	u                              []float64 // scratch: the update
	colSum                         []float64 // scratch: column sums of one batch slice
}

func init() {
	ruleFactories["adafactor"] = func(c *config) (rule, error) {
		r := &adafactorRule{eps1: c.f("eps1"), eps2: c.f("eps2"), clip: c.f("clip_threshold"),
			decay: c.f("decay_rate"), beta1: c.f("beta1"), scaleParam: c.b("scale_parameter"),
			relStep: c.b("relative_step"), warmup: c.b("warmup_init")}
		manual := c.f("lr") != 0 || c.sched != nil
		if r.relStep && manual {
			return nil, errors.New("cannot combine a manual lr (or schedule) with relative_step; set relative_step to false")
		}
		if !r.relStep && !manual {
			return nil, errors.New("relative_step is off: an lr (or schedule) is required")
		}
		if r.warmup && !r.relStep {
			return nil, errors.New("warmup_init requires relative_step")
		}
		return r, nil
	}
	registerOptimizer("adafactor", NewAdafactor)
}

func (r *adafactorRule) bufferNames() []string {
	if r.beta1 > 0 {
		return []string{"exp_avg"}
	}
	return nil
}
func (r *adafactorRule) bufferInit(int) float64 { return 0 }

// adafactorDims returns the batch size B, rows R and columns C of the factorisation of shape, or
// factored=false for vectors and scalars.
func adafactorDims(shape []int) (b, rows, cols int, factored bool) {
	d := len(shape)
	if d < 2 {
		return 0, 0, 0, false
	}
	rows, cols = shape[d-2], shape[d-1]
	b = 1
	for _, s := range shape[:d-2] {
		b *= s
	}
	return b, rows, cols, true
}

// adafactorScalars is the number of float64 statistics Adafactor keeps in st.scal for a parameter of
// this shape: row and column accumulators for matrices (per leading batch), a full second moment otherwise.
func adafactorScalars(shape []int) int {
	if nb, rows, cols, factored := adafactorDims(shape); factored {
		return nb*rows + nb*cols
	}
	return tensor.Shape(shape).TotalSize()
}

// checkState rejects a loaded state whose statistics do not fit the parameter's shape.
func (r *adafactorRule) checkState(st *paramState) error {
	if st.step > 0 && len(st.scal) != adafactorScalars(st.shape) {
		return errors.Errorf("adafactor: parameter %q has %d statistics, its shape %v needs %d", st.name, len(st.scal), st.shape, adafactorScalars(st.shape))
	}
	return nil
}

func (r *adafactorRule) update32(v *view, st *paramState, lr, wd float64) {
	var m []float32
	if r.beta1 > 0 {
		m = st.b32[0]
	}
	adafactorUpdate(r, v.w32, v.g32, m, v.shape, st, lr, wd)
}

func (r *adafactorRule) update64(v *view, st *paramState, lr, wd float64) {
	var m []float64
	if r.beta1 > 0 {
		m = st.b64[0]
	}
	adafactorUpdate(r, v.w64, v.g64, m, v.shape, st, lr, wd)
}

func adafactorUpdate[T Float](r *adafactorRule, p, g, m []T, shape tensor.Shape, st *paramState, lr, wd float64) {
	n := len(p)
	t := float64(st.step)
	rmsP := math.Sqrt(sumSquares(p) / float64(n))
	step := lr
	if r.relStep {
		minStep := 1e-2
		if r.warmup {
			minStep = 1e-6 * t
		}
		step = min(minStep, 1/math.Sqrt(t))
	}
	if r.scaleParam {
		step *= max(r.eps2, rmsP)
	}
	b2 := 1 - math.Pow(t, r.decay)
	omb2 := 1 - b2
	if cap(r.u) < n {
		r.u = make([]float64, n)
	}
	u := r.u[:n]
	nb, rows, cols, factored := adafactorDims(shape)
	if factored {
		want := nb*rows + nb*cols
		if len(st.scal) != want {
			st.scal = make([]float64, want) // first step (a loaded state of the wrong size restarts too)
		}
		row, col := st.scal[:nb*rows], st.scal[nb*rows:]
		if cap(r.colSum) < cols {
			r.colSum = make([]float64, cols)
		}
		cs := r.colSum[:cols]
		for b := 0; b < nb; b++ {
			clear(cs)
			rb, cb := row[b*rows:(b+1)*rows], col[b*cols:(b+1)*cols]
			rowMean := 0.0
			for i := 0; i < rows; i++ {
				gi := g[(b*rows+i)*cols:][:cols]
				s := 0.0
				for j, x := range gi {
					q := float64(x)*float64(x) + r.eps1
					s += q
					cs[j] += q
				}
				rb[i] = b2*rb[i] + omb2*(s/float64(cols))
				rowMean += rb[i]
			}
			rowMean /= float64(rows)
			for j := range cb {
				cb[j] = b2*cb[j] + omb2*(cs[j]/float64(rows))
			}
			for i := 0; i < rows; i++ {
				rf := 1 / math.Sqrt(rb[i]/rowMean)
				k0 := (b*rows + i) * cols
				gi, ui := g[k0:k0+cols], u[k0:k0+cols]
				for j, x := range gi {
					ui[j] = float64(x) * rf * (1 / math.Sqrt(cb[j]))
				}
			}
		}
	} else {
		if len(st.scal) != n {
			st.scal = make([]float64, n)
		}
		vs := st.scal
		for k, x := range g {
			q := float64(x)*float64(x) + r.eps1
			vs[k] = b2*vs[k] + omb2*q
			u[k] = float64(x) / math.Sqrt(vs[k])
		}
	}
	ss := 0.0
	for _, x := range u {
		ss += x * x
	}
	scale := step / max(1, math.Sqrt(ss/float64(n))/r.clip)
	shrink := 1 - wd*step
	b1, omb1 := T(r.beta1), T(1-r.beta1)
	for k := range p {
		uk := T(u[k] * scale)
		if m != nil {
			m[k] = b1*m[k] + omb1*uk
			uk = m[k]
		}
		pk := p[k]
		if wd != 0 {
			pk *= T(shrink)
		}
		p[k] = pk - uk
		g[k] = 0
	}
}
