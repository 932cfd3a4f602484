from nasr.bin.report_lid import budget_note, render


def row(system, steps, hparams, p=1):
    return {"system": system, "tower": "LSTM64", "p": p, "acc": 0.5, "correct": 4, "num": 8, "cavg": 0.1,
            "eer": 0.1, "params": 1000, "train_steps": steps, "train_seconds": 36.0, "hparams": hparams,
            "source": {}, "eval_command": "x", "exp_dir": "exp/x", "member_accs": None, "blocks": ["lstm_64"], "macs": None}


def test_table_shows_steps_and_time_and_says_whether_budgets_are_equal():
    hp = {"lr": 0.002, "batch_size": 16}
    same = [row("ens", 2000, hp), row("ens", 2000, hp, p=2), row("baseline_lstm", 2000, hp)]
    text = render(same, [], None, None, "t", "", "test", "c.png")
    assert "| train steps per tower | train time (h) |" in text and "| 2000 | 0.010 |" in text
    assert "Equal budgets: every tower, ensemble member and baseline trained 2000 steps" in text
    assert budget_note([row("ens", 2000, hp), row("baseline_lstm", 1000, hp)]).startswith("Budgets differ")
    assert budget_note([row("ens", 2000, hp), row("baseline_lstm", 2000, {"lr": 0.001})]).startswith("Budgets differ")
