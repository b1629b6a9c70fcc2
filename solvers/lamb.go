package solvers

import (
	"math"

	"github.com/pkg/errors"
)

// NewLAMB returns LAMB (You et al., "Large Batch Optimization for Deep Learning: Training BERT in 76
// minutes") as NVIDIA apex's FusedLAMB (NVIDIA/apex, apex/optimizers/fused_lamb.py and
// csrc/multi_tensor_lamb.cu), the implementation used for the paper's BERT recipe:
//
//	global clipping: g ← g / max(1, ‖g‖_all/max_grad_norm)        (max_grad_norm 0: off)
//	L2 mode (adam_w_mode off): g ← g + wd·p
//	m ← β1·m + β3·g (β3 = 1−β1, or 1 without grad_averaging);  v ← β2·v + (1−β2)·g²
//	r = (m/bc1)/(√(v/bc2) + eps)  (bc = 1 without bias_correction);  adam_w_mode: r ← r + wd·p
//	trust = ‖p‖/‖r‖ per tensor, 1 if either norm is 0; p ← p − lr·trust·r
//
// As in apex, the trust ratio applies only to tensors with non-zero weight decay unless use_nvlamb is
// set: a decay mask (WithDecayMask(NoDecayOnVectors)) therefore excludes gains and biases from both the
// decay and the layer-wise adaptation, the paper's practice. ‖p‖ is taken before the step.
// Hyperparameters (defaults, apex's): lr (1e-3), beta1 (0.9), beta2 (0.999), eps (1e-6),
// weight_decay (0.01), bias_correction (true), grad_averaging (true), adam_w_mode (true),
// max_grad_norm (1.0; 0 disables), use_nvlamb (false).
func NewLAMB(opts ...Option) (*Optimizer, error) {
	return newOptimizer("lamb", []hyperSpec{
		lrSpec(1e-3), betaSpec("beta1", 0.9), betaSpec("beta2", 0.999), epsSpec(1e-6), wdSpec(0.01),
		flagSpec("bias_correction", true), flagSpec("grad_averaging", true), flagSpec("adam_w_mode", true),
		{key: "max_grad_norm", def: 1, check: nonNegative}, flagSpec("use_nvlamb", false),
	}, opts)
}

type lambRule struct {
	beta1, beta2, eps, maxNorm    float64
	biasCorr, gradAvg, adamW, nvl bool
	clip                          float64 // this step's divisor of the gradient, set by prepare
	u32                           []float32
	u64                           []float64
}

func init() {
	ruleFactories["lamb"] = func(c *config) (rule, error) {
		return &lambRule{beta1: c.f("beta1"), beta2: c.f("beta2"), eps: c.f("eps"), maxNorm: c.f("max_grad_norm"),
			biasCorr: c.b("bias_correction"), gradAvg: c.b("grad_averaging"), adamW: c.b("adam_w_mode"),
			nvl: c.b("use_nvlamb"), clip: 1}, nil
	}
	registerOptimizer("lamb", NewLAMB)
	ruleFactories["lars"] = func(c *config) (rule, error) {
		if c.b("nesterov") && (c.f("momentum") == 0 || c.f("dampening") != 0) {
			return nil, errors.New("nesterov requires momentum > 0 and zero dampening")
		}
		return &larsRule{mu: c.f("momentum"), damp: c.f("dampening"), nesterov: c.b("nesterov"),
			coeff: c.f("trust_coefficient"), eps: c.f("eps"), trustClip: c.b("trust_clip"),
			always: c.b("always_adapt")}, nil
	}
	registerOptimizer("lars", NewLARS)
}

func (r *lambRule) bufferNames() []string  { return []string{"exp_avg", "exp_avg_sq"} }
func (r *lambRule) bufferInit(int) float64 { return 0 }

func (r *lambRule) prepare(views []view) {
	r.clip = 1
	if r.maxNorm > 0 {
		if n := gradNorm(views); n > r.maxNorm {
			r.clip = n / r.maxNorm
		}
	}
}

func (r *lambRule) update32(v *view, st *paramState, lr, wd float64) {
	r.u32 = growSlice(r.u32, len(v.w32))
	lambUpdate(r, v.w32, v.g32, st.b32[0], st.b32[1], r.u32, st.step, lr, wd)
}
func (r *lambRule) update64(v *view, st *paramState, lr, wd float64) {
	r.u64 = growSlice(r.u64, len(v.w64))
	lambUpdate(r, v.w64, v.g64, st.b64[0], st.b64[1], r.u64, st.step, lr, wd)
}

func lambUpdate[T Float](r *lambRule, p, g, m, v, u []T, step int64, lr, wd float64) {
	bc1, bc2 := 1.0, 1.0
	if r.biasCorr {
		t := float64(step)
		bc1, bc2 = 1-math.Pow(r.beta1, t), 1-math.Pow(r.beta2, t)
	}
	b3 := 1.0
	if r.gradAvg {
		b3 = 1 - r.beta1
	}
	b1, b2, omb2, b3T, eps := T(r.beta1), T(r.beta2), T(1-r.beta2), T(b3), T(r.eps)
	ibc1, ibc2, clip, wdT := T(1/bc1), T(1/bc2), T(r.clip), T(wd)
	var pn, un float64
	for i := range p {
		pi := p[i]
		gi := g[i] / clip
		if !r.adamW {
			gi += wdT * pi
		}
		m[i] = m[i]*b1 + b3T*gi
		v[i] = v[i]*b2 + omb2*gi*gi
		ui := (m[i] * ibc1) / (sqrt(v[i]*ibc2) + eps)
		if r.adamW {
			ui += wdT * pi
		}
		u[i] = ui
		pn += float64(pi) * float64(pi)
		un += float64(ui) * float64(ui)
	}
	ratio := lr
	if (r.nvl || wd != 0) && pn != 0 && un != 0 {
		ratio = lr * (math.Sqrt(pn) / math.Sqrt(un))
	}
	rT := T(ratio)
	for i := range p {
		p[i] -= rT * u[i]
		g[i] = 0
	}
}

// NewLARS returns LARS (You, Gitman & Ginsburg, "Large Batch Training of Convolutional Networks",
// Algorithm 1) as timm's Lars (huggingface/pytorch-image-models, timm/optim/lars.py), which follows
// NVIDIA apex's LARC:
//
//	if wd ≠ 0 or always_adapt:
//	    trust = η·‖p‖/(‖g‖ + wd·‖p‖ + eps), 1 if ‖p‖ = 0 or ‖g‖ = 0;  trust_clip: trust ← min(trust/lr, 1)
//	    d = (g + wd·p)·trust
//	else d = g
//	b ← d at the first step, then b ← μ·b + (1 − dampening)·d;  d = d + μ·b (nesterov) or b
//	p ← p − lr·d
//
// The weight decay is added to the gradient as the paper's Algorithm 1 does (the timm version read adds it
// out of place, so its decay is lost; gradlab follows the paper). As in timm, a tensor without weight decay
// is not adapted unless always_adapt: WithDecayMask(NoDecayOnVectors) excludes gains and biases from both.
// Hyperparameters (defaults): lr (1; timm's), momentum (0.9, the paper's), dampening (0), nesterov (false),
// weight_decay (5e-4, the paper's), trust_coefficient η (1e-3), eps (1e-8), trust_clip (false, LARC's
// clipping mode), always_adapt (false).
func NewLARS(opts ...Option) (*Optimizer, error) {
	return newOptimizer("lars", []hyperSpec{
		lrSpec(1), betaSpec("momentum", 0.9), {key: "dampening", def: 0, check: closedUnit},
		flagSpec("nesterov", false), wdSpec(5e-4), {key: "trust_coefficient", def: 1e-3, check: positive},
		epsSpec(1e-8), flagSpec("trust_clip", false), flagSpec("always_adapt", false),
	}, opts)
}

type larsRule struct {
	mu, damp, coeff, eps        float64
	nesterov, trustClip, always bool
}

func (r *larsRule) bufferNames() []string {
	if r.mu > 0 {
		return []string{"momentum_buffer"}
	}
	return nil
}
func (r *larsRule) bufferInit(int) float64 { return 0 }

func (r *larsRule) update32(v *view, st *paramState, lr, wd float64) {
	var b []float32
	if r.mu > 0 {
		b = st.b32[0]
	}
	larsUpdate(r, v.w32, v.g32, b, st.step, lr, wd)
}
func (r *larsRule) update64(v *view, st *paramState, lr, wd float64) {
	var b []float64
	if r.mu > 0 {
		b = st.b64[0]
	}
	larsUpdate(r, v.w64, v.g64, b, st.step, lr, wd)
}

func larsUpdate[T Float](r *larsRule, p, g, b []T, step int64, lr, wd float64) {
	trust := 1.0
	adapt := wd != 0 || r.always
	if adapt {
		wn, gn := math.Sqrt(sumSquares(p)), math.Sqrt(sumSquares(g))
		if wn > 0 && gn > 0 {
			trust = r.coeff * wn / (gn + wn*wd + r.eps)
		}
		if r.trustClip && lr > 0 {
			trust = min(trust/lr, 1)
		}
	}
	tr, wdT, mu, damp1, lrT := T(trust), T(wd), T(r.mu), T(1-r.damp), T(lr)
	first := step == 1
	for i := range p {
		d := g[i]
		if adapt {
			d = (d + wdT*p[i]) * tr
		}
		if b != nil {
			if first {
				b[i] = d
			} else {
				b[i] = mu*b[i] + damp1*d
			}
			if r.nesterov {
				d += mu * b[i]
			} else {
				d = b[i]
			}
		}
		p[i] -= lrT * d
		g[i] = 0
	}
}
