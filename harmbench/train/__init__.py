"""harmbench.train"""
