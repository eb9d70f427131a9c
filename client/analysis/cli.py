def eval_cmd(): pass
def leaderboard_cmd(): pass
