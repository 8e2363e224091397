from hwsim.cli import run

run()
