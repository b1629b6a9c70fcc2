package moe

import (
	"fmt"
	"math"

	"github.com/gradlab/gradlab/nn"
	"github.com/pkg/errors"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// Router selects the score function of the gate.
type Router int

const (
	// Softmax scores s = softmax(z) over the experts: Switch Transformers, GShard, Mixtral, DeepSeekMoE,
	// DeepSeek-V2.
	Softmax Router = iota
	// Sigmoid scores s = σ(z), with the selected gates renormalised to sum to one: DeepSeek-V3.
	Sigmoid
)

func (r Router) String() string {
	switch r {
	case Softmax:
		return "softmax"
	case Sigmoid:
		return "sigmoid"
	}
	return fmt.Sprintf("Router(%d)", int(r))
}

// Renorm says whether the gates of a token's selected experts are renormalised to sum to one.
type Renorm int

const (
	// RenormDefault renormalises sigmoid gates (DeepSeek-V3) and leaves softmax gates as they are
	// (DeepSeek-V2; deepseek-ai/DeepSeek-V3 inference/model.py Gate.forward).
	RenormDefault Renorm = iota
	// RenormOn renormalises: with a softmax router this is Mixtral's softmax over the top-k logits.
	RenormOn
	// RenormOff never renormalises.
	RenormOff
)

// DefaultBiasGamma is the bias update speed γ of DeepSeek-V3's auxiliary-loss-free balancing (1e-3 for most
// of V3's pre-training, "DeepSeek-V3 Technical Report" §4.2).
const DefaultBiasGamma = 1e-3

// Config describes a Mixture-of-Experts feed-forward layer. Zero values select the documented defaults.
type Config struct {
	// Dim is the model width d; Hidden the width d_ff of each routed expert (DeepSeek's moe_inter_dim).
	Dim, Hidden int
	// Experts is the number N_r of routed experts; TopK the number K_r each token runs.
	Experts, TopK int
	// Shared is the number N_s of shared experts, run on every token as one SwiGLU of width N_s·Hidden
	// (DeepSeekMoE); 0 for none.
	Shared int
	// Router is the score function (default Softmax).
	Router Router
	// Renorm says whether the selected gates are renormalised (default: sigmoid yes, softmax no).
	Renorm Renorm
	// RouteScale multiplies the gates (DeepSeek-V3's route_scale, 2.5 in V3; 0 means 1).
	RouteScale float64
	// Groups and TopKGroups enable DeepSeek-V3's group-limited routing (see TopKGrouped); 0 means 1 (off).
	Groups, TopKGroups int
	// CapacityFactor C_f sets each expert's capacity to ⌈C_f·T·K_r/N_r⌉ tokens per forward pass, the
	// overflow being dropped (Switch Transformers); 0 means no dropping (capacity T).
	CapacityFactor float64
	// AuxAlpha is the coefficient α of the auxiliary load-balancing loss (Switch 1e-2, DeepSeek-V3 1e-4);
	// 0 builds no such loss.
	AuxAlpha float64
	// ZBeta is the coefficient β of the router z-loss (ST-MoE: 1e-3); 0 builds no z-loss.
	ZBeta float64
	// BiasGamma is the speed γ of UpdateBias (0 means DefaultBiasGamma; SetBiasGamma can set it to 0).
	BiasGamma float64
	// Init initialises the gate and the expert weights (default: nn.Linear's U(±1/√fan_in) per matrix).
	Init nn.Init
}

func (c Config) validate() error {
	switch {
	case c.Dim <= 0 || c.Hidden <= 0:
		return errors.Errorf("bad sizes d=%d d_ff=%d", c.Dim, c.Hidden)
	case c.Experts <= 0 || c.TopK <= 0 || c.TopK > c.Experts:
		return errors.Errorf("bad routing: %d experts, top-%d", c.Experts, c.TopK)
	case c.Shared < 0:
		return errors.Errorf("negative number of shared experts %d", c.Shared)
	case c.Router != Softmax && c.Router != Sigmoid:
		return errors.Errorf("unknown router %v", c.Router)
	case c.Renorm < RenormDefault || c.Renorm > RenormOff:
		return errors.Errorf("unknown renormalisation %d", c.Renorm)
	case c.RouteScale < 0 || math.IsNaN(c.RouteScale) || math.IsInf(c.RouteScale, 0):
		return errors.Errorf("bad route scale %v", c.RouteScale)
	case c.CapacityFactor < 0 || math.IsNaN(c.CapacityFactor):
		return errors.Errorf("bad capacity factor %v", c.CapacityFactor)
	case c.AuxAlpha < 0 || c.ZBeta < 0 || c.BiasGamma < 0 || math.IsNaN(c.AuxAlpha+c.ZBeta+c.BiasGamma):
		return errors.Errorf("negative or NaN coefficient (α=%v, β=%v, γ=%v)", c.AuxAlpha, c.ZBeta, c.BiasGamma)
	}
	g, tg := max(c.Groups, 1), max(c.TopKGroups, 1)
	if c.Experts%g != 0 || tg > g || c.TopK > tg*(c.Experts/g) {
		return errors.Errorf("bad grouping: %d experts in %d groups, %d selected, top-%d", c.Experts, g, tg, c.TopK)
	}
	return nil
}

// Layer is a Mixture-of-Experts feed-forward layer (Shazeer et al., "Outrageously Large Neural Networks:
// The Sparsely-Gated Mixture-of-Experts Layer", 2017; Fedus et al., "Switch Transformers", 2021; Dai et al.,
// "DeepSeekMoE", 2024; DeepSeek-V2 and V3; Jiang et al., "Mixtral of Experts", 2024), following
// deepseek-ai/DeepSeek-V3 inference/model.py (Gate, Expert, MoE):
//
//	z = u·E (T, N_r);   s = softmax(z) or σ(z)
//	TopK_t = the K_r largest s_{t,i} + b_i             (b only selects: aux-loss-free balancing)
//	g_{t,i} = s_{t,i}·1[i ∈ TopK_t]; optionally g ← g/Σ_i g; g ← route_scale·g
//	y_t = FFN^shared(u_t) + Σ_i g_{t,i}·FFN_i(u_t)
//
// with SwiGLU experts. The residual u_t is not added (the decoder block adds it). Forward computes the
// routed experts sparsely (see Experts); ForwardDense is the dense masked reference. Parameters are named
// "<name>.gate.weight" (d, N_r), "<name>.experts.w1.weight" and "<name>.experts.w3.weight" (N_r, d, d_ff),
// "<name>.experts.w2.weight" (N_r, d_ff, d) and "<name>.shared_experts.w{1,2,3}.weight"; the balancing
// bias b is the non-parameter input node "<name>.gate.e_score_correction_bias" (Hugging Face's name for it),
// changed only by UpdateBias.
type Layer struct {
	// Gate is the router E, a (d, N_r) Linear without bias.
	Gate *nn.Linear
	// Bias is the (N_r) selection bias b: an input node, not a parameter.
	Bias *G.Node
	// W1, W3 (N_r, d, d_ff) and W2 (N_r, d_ff, d) are the stacked routed experts.
	W1, W3, W2 *G.Node
	// Shared is the shared-expert SwiGLU, nil without one.
	Shared *nn.SwiGLU

	cfg   Config
	dt    tensor.Dtype
	rec   *recorder
	gamma float64
}

// NewLayer creates the parameters of a Mixture-of-Experts layer with the Builder b.
func NewLayer(b *nn.Builder, name string, cfg Config) (*Layer, error) {
	if b == nil {
		return nil, errors.New("moe.NewLayer: nil builder")
	}
	if err := cfg.validate(); err != nil {
		return nil, errors.Wrapf(err, "moe.NewLayer %q", name)
	}
	init := cfg.Init
	if init == nil {
		init = nn.KaimingUniform(1 / math.Sqrt(3))
	}
	l := &Layer{cfg: cfg, dt: b.Dtype(), rec: &recorder{}, gamma: cfg.BiasGamma}
	if l.gamma == 0 {
		l.gamma = DefaultBiasGamma
	}
	var err error
	if l.Gate, err = nn.NewLinear(b, name+".gate", cfg.Dim, cfg.Experts, nn.WithInit(init)); err != nil {
		return nil, err
	}
	if l.W1, err = b.Param(name+".experts.w1.weight", init, cfg.Experts, cfg.Dim, cfg.Hidden); err != nil {
		return nil, err
	}
	if l.W2, err = b.Param(name+".experts.w2.weight", init, cfg.Experts, cfg.Hidden, cfg.Dim); err != nil {
		return nil, err
	}
	if l.W3, err = b.Param(name+".experts.w3.weight", init, cfg.Experts, cfg.Dim, cfg.Hidden); err != nil {
		return nil, err
	}
	if cfg.Shared > 0 {
		if l.Shared, err = nn.NewSwiGLU(b, name+".shared_experts", cfg.Dim, nn.WithHidden(cfg.Shared*cfg.Hidden), nn.WithInit(init)); err != nil {
			return nil, err
		}
	}
	bname := name + ".gate.e_score_correction_bias"
	if len(b.Graph().ByName(bname)) > 0 {
		return nil, errors.Errorf("moe.NewLayer: name %q is already used in the graph", bname)
	}
	bias := tensor.New(tensor.WithShape(cfg.Experts), tensor.Of(b.Dtype()))
	l.Bias = G.NewVector(b.Graph(), b.Dtype(), G.WithShape(cfg.Experts), G.WithName(bname), G.WithValue(bias))
	return l, nil
}

// Config returns the layer's configuration.
func (l *Layer) Config() Config { return l.cfg }

// Params returns the trainable parameters: the gate, W1, W2, W3 and the shared experts' weights (not the
// balancing bias, which no gradient updates).
func (l *Layer) Params() G.Nodes {
	ps := G.Nodes{l.Gate.W, l.W1, l.W2, l.W3}
	if l.Shared != nil {
		ps = append(ps, l.Shared.Params()...)
	}
	return ps
}

// Output holds the nodes of one forward pass of a Layer.
type Output struct {
	// Y is the (T, d) output: shared plus routed experts (no residual).
	Y *G.Node
	// Logits z (T, N_r), Scores s (T, N_r), the selection Mask (T, N_r, 0/1, before any capacity drop),
	// Keep (the dispatched pairs: Mask after the capacity limit, Mask itself without one) and Gates
	// (T, N_r, zero off Mask).
	Logits, Scores, Mask, Keep, Gates *G.Node
	// AuxLoss is α·N_r·Σ_i f_i·P_i (nil when AuxAlpha = 0); ZLoss is β·mean_t(logsumexp_i z_{t,i})² (nil
	// when ZBeta = 0); Loss is their sum (nil when both are nil), to add to the model's loss.
	AuxLoss, ZLoss, Loss *G.Node
	// Capacity is the per-expert capacity used (T when nothing can be dropped).
	Capacity int
}

// Forward runs the layer on x (T, d) with sparse expert computation: each token runs only its K_r experts
// (and the shared ones).
func (l *Layer) Forward(x *G.Node) (*Output, error) { return l.forward(x, false) }

// ForwardDense is the dense masked reference: every routed expert runs on every token and its output is
// multiplied by the (mostly zero) gate. Same function as Forward, N_r/K_r times the cost; kept for tests.
func (l *Layer) ForwardDense(x *G.Node) (*Output, error) { return l.forward(x, true) }

func (l *Layer) forward(x *G.Node, dense bool) (*Output, error) {
	c := l.cfg
	if x == nil || x.Dims() != 2 || x.Shape()[1] != c.Dim || x.Dtype() != l.dt {
		return nil, errors.Errorf("moe.Layer: want x (T, %d) of %v, got %v", c.Dim, l.dt, describe(x))
	}
	t := x.Shape()[0]
	o := &Output{Capacity: t}
	var err error
	if o.Logits, err = l.Gate.Forward(x); err != nil {
		return nil, err
	}
	if c.Router == Sigmoid {
		o.Scores, err = G.Sigmoid(o.Logits)
	} else {
		o.Scores, err = G.SoftMax(o.Logits, 1)
	}
	if err != nil {
		return nil, err
	}
	top := &topKOp{k: c.TopK, groups: max(c.Groups, 1), topkGroups: max(c.TopKGroups, 1), rec: l.rec}
	if o.Mask, err = topKNode(o.Scores, l.Bias, top); err != nil {
		return nil, err
	}
	o.Keep = o.Mask
	if c.CapacityFactor > 0 {
		if o.Capacity = CapacityFor(c.CapacityFactor, t, c.TopK, c.Experts); o.Capacity < t {
			if o.Keep, err = capacityNode(o.Mask, o.Scores, &capacityOp{c: o.Capacity, rec: l.rec}); err != nil {
				return nil, err
			}
		}
	}
	if o.Gates, err = l.gates(o.Scores, o.Mask, t); err != nil {
		return nil, err
	}
	if dense {
		o.Y, err = l.denseExperts(x, o.Gates, o.Keep)
	} else {
		o.Y, err = Experts(x, o.Gates, o.Keep, l.W1, l.W3, l.W2)
	}
	if err != nil {
		return nil, err
	}
	if l.Shared != nil {
		sh, err := l.Shared.Forward(x)
		if err != nil {
			return nil, err
		}
		if o.Y, err = G.Add(o.Y, sh); err != nil {
			return nil, err
		}
	}
	if c.AuxAlpha > 0 {
		if o.AuxLoss, err = AuxLoss(o.Scores, o.Mask, c.TopK, c.AuxAlpha, c.Router == Sigmoid); err != nil {
			return nil, err
		}
		o.Loss = o.AuxLoss
	}
	if c.ZBeta > 0 {
		if o.ZLoss, err = ZLoss(o.Logits, c.ZBeta); err != nil {
			return nil, err
		}
		if o.Loss == nil {
			o.Loss = o.ZLoss
		} else if o.Loss, err = G.Add(o.Loss, o.ZLoss); err != nil {
			return nil, err
		}
	}
	return o, nil
}

func describe(x *G.Node) string {
	if x == nil {
		return "nil"
	}
	return fmt.Sprintf("%v of %v", x.Shape(), x.Dtype())
}

// gates builds g = mask ⊙ s, renormalised and scaled as configured.
func (l *Layer) gates(s, mask *G.Node, t int) (*G.Node, error) {
	g, err := G.HadamardProd(mask, s)
	if err != nil {
		return nil, err
	}
	renorm := l.cfg.Renorm == RenormOn || (l.cfg.Renorm == RenormDefault && l.cfg.Router == Sigmoid)
	if renorm {
		if g, err = rowNormalise(g, t); err != nil {
			return nil, err
		}
	}
	if rs := l.cfg.RouteScale; rs != 0 && rs != 1 {
		if g, err = G.Mul(g, constant(l.dt, rs)); err != nil {
			return nil, err
		}
	}
	return g, nil
}

// rowNormalise divides each row of m (t, n) by its sum.
func rowNormalise(m *G.Node, t int) (*G.Node, error) {
	den, err := G.Sum(m, 1)
	if err != nil {
		return nil, err
	}
	if den, err = nn.Reshape(den, t, 1); err != nil {
		return nil, err
	}
	return G.BroadcastHadamardDiv(m, den, nil, []byte{1})
}

// denseExperts runs every expert on every token and sums the outputs weighted by gates ⊙ keep.
func (l *Layer) denseExperts(x, gates, keep *G.Node) (*G.Node, error) {
	t := x.Shape()[0]
	gk := gates
	var err error
	if keep != nil {
		if gk, err = G.HadamardProd(gates, keep); err != nil {
			return nil, err
		}
	}
	var y *G.Node
	for i := 0; i < l.cfg.Experts; i++ {
		w1, err := G.Slice(l.W1, G.S(i))
		if err != nil {
			return nil, err
		}
		w3, err := G.Slice(l.W3, G.S(i))
		if err != nil {
			return nil, err
		}
		w2, err := G.Slice(l.W2, G.S(i))
		if err != nil {
			return nil, err
		}
		h1, err := G.Mul(x, w1)
		if err != nil {
			return nil, err
		}
		if h1, err = nn.SiLU(h1); err != nil {
			return nil, err
		}
		h3, err := G.Mul(x, w3)
		if err != nil {
			return nil, err
		}
		a, err := G.HadamardProd(h1, h3)
		if err != nil {
			return nil, err
		}
		oi, err := G.Mul(a, w2)
		if err != nil {
			return nil, err
		}
		gi, err := G.Slice(gk, nil, G.S(i))
		if err != nil {
			return nil, err
		}
		if gi, err = nn.Reshape(gi, t, 1); err != nil {
			return nil, err
		}
		if oi, err = G.BroadcastHadamardProd(oi, gi, nil, []byte{1}); err != nil {
			return nil, err
		}
		if y == nil {
			y = oi
		} else if y, err = G.Add(y, oi); err != nil {
			return nil, err
		}
	}
	return y, nil
}

// AuxLoss is the auxiliary load-balancing loss of Switch Transformers in DeepSeek's form
// (DeepSeek-V2 §2.2.3, DeepSeek-V3 §2.1.2):
//
//	L_aux = α·N_r·Σ_i f_i·P_i,   f_i = (1/(K_r·T))·Σ_t 1[i ∈ TopK_t],   P_i = (1/T)·Σ_t s'_{t,i}
//
// where f_i is a constant (mask carries no gradient), s' = s for softmax routers and s' = s/Σ_j s_j
// (per token) for sigmoid routers (sigmoid = true), as in DeepSeek-V3's sequence-wise loss. scores and mask
// are (T, N_r). With uniform scores (P_i = 1/N_r) L_aux = α exactly, whatever the selection, which is also
// its minimum over balanced selections.
func AuxLoss(scores, mask *G.Node, k int, alpha float64, sigmoid bool) (*G.Node, error) {
	if scores == nil || mask == nil || scores.Dims() != 2 || !scores.Shape().Eq(mask.Shape()) {
		return nil, errors.New("moe.AuxLoss: want scores and mask of one (T, N_r) shape")
	}
	if k <= 0 {
		return nil, errors.Errorf("moe.AuxLoss: bad k %d", k)
	}
	t, e := scores.Shape()[0], scores.Shape()[1]
	s := scores
	var err error
	if sigmoid {
		if s, err = rowNormalise(scores, t); err != nil {
			return nil, err
		}
	}
	p, err := G.Sum(s, 0) // T·P_i
	if err != nil {
		return nil, err
	}
	cnt, err := G.Sum(mask, 0) // K_r·T·f_i
	if err != nil {
		return nil, err
	}
	fp, err := G.HadamardProd(cnt, p)
	if err != nil {
		return nil, err
	}
	sum, err := G.Sum(fp)
	if err != nil {
		return nil, err
	}
	return G.Mul(sum, constant(scores.Dtype(), alpha*float64(e)/float64(k*t*t)))
}

// ZLoss is the router z-loss of ST-MoE (Zoph et al., "ST-MoE: Designing Stable and Transferable Sparse
// Expert Models", 2022): β·mean_t(logsumexp_i z_{t,i})² for the (T, N_r) router logits z. The logsumexp
// is this package's own op (Gorgonia v0.9.18's LogSumExp is wrong on matrices).
func ZLoss(logits *G.Node, beta float64) (*G.Node, error) {
	if logits == nil || logits.Dims() != 2 {
		return nil, errors.New("moe.ZLoss: want logits (T, N_r)")
	}
	lse, err := rowLogSumExp(logits)
	if err != nil {
		return nil, err
	}
	sq, err := G.Square(lse)
	if err != nil {
		return nil, err
	}
	m, err := G.Mean(sq)
	if err != nil {
		return nil, err
	}
	return G.Mul(m, constant(logits.Dtype(), beta))
}
