// Gated mixture of K linear experts (bayesmoe's GatedExperts with its default priors):
// softmax gate with the last expert's logit fixed at 0; H > 0 puts one tanh hidden layer
// of H units in the gate (gate="mlp"), H = 0 is the linear gate.
data {
  int<lower=1> n;
  int<lower=1> p;
  int<lower=2> K;
  int<lower=0> H;
  matrix[n, p] X;
  vector[n] y;
  real m0;
  real<lower=0> s0;
  real<lower=0> s_y;
}
transformed data {
  int G = H > 0 ? H : p;
}
parameters {
  vector[K] intercept;
  real<lower=0> tau_base;
  matrix[K, p] beta;
  vector<lower=0>[K] sigma;
  row_vector[K - 1] gate_intercept;
  matrix[G, K - 1] gate_weights;
  matrix[p, H] gate_hidden_weights;
  row_vector[H] gate_hidden_bias;
}
model {
  intercept ~ normal(m0, s0);
  tau_base ~ cauchy(0, s_y);
  to_vector(beta) ~ normal(0, tau_base);
  sigma ~ normal(0, s_y);
  gate_intercept ~ normal(0, 2.5);
  to_vector(gate_weights) ~ normal(0, 2.5);
  to_vector(gate_hidden_weights) ~ std_normal();
  gate_hidden_bias ~ std_normal();
  {
    matrix[n, K] mu = X * beta' + rep_matrix(intercept', n);
    matrix[n, K - 1] eta;
    if (H > 0)
      eta = tanh(X * gate_hidden_weights + rep_matrix(gate_hidden_bias, n)) * gate_weights;
    else
      eta = X * gate_weights;
    eta += rep_matrix(gate_intercept, n);
    for (i in 1:n) {
      vector[K] logit = append_row(eta[i]', 0);
      vector[K] lp = log_softmax(logit);
      for (k in 1:K) lp[k] += normal_lpdf(y[i] | mu[i, k], sigma[k]);
      target += log_sum_exp(lp);
    }
  }
}
