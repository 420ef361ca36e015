import streamlit as st

st.title("Home")
st.info("Coming: this page is being built.")
