"""harmbench.recipes"""
